#!/usr/bin/env node
// The mtlskit CLI. Built sources live in dist/ (`npm ci` builds them through `prepare`).
import { main } from "../dist/cli/main.js";
await main();
