/**
 * The one door to Preact (the views' library): every web file takes h, Fragment, render and the
 * hooks from here. JSX compiles to h(...) (tsconfig.web.json's jsxFactory), so no file imports
 * preact implicitly through a JSX runtime.
 */
export type { ComponentChildren, JSX } from "preact";
export { Fragment, h, render } from "preact";
export { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
