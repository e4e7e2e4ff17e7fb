/**
 * The echo service of the grpc-js example, defined without a .proto file: one unary method whose
 * request and response are raw bytes. examples/grpc/server.ts serves it, client.ts calls it.
 */
import * as grpc from "@grpc/grpc-js";

const raw = (b: Buffer) => b;

/** echoService: `/mtlskit.example.Echo/Echo`, bytes in, the same bytes out. */
export const echoService = {
  echo: {
    path: "/mtlskit.example.Echo/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
    originalName: "Echo",
  },
} satisfies grpc.ServiceDefinition;

/** EchoClient is the generated client constructor: `new EchoClient(target, credentials).echo(Buffer, callback)`. */
export const EchoClient = grpc.makeGenericClientConstructor(echoService, "Echo");

/** echo calls the service once and resolves with the reply as text. */
export function echo(client: grpc.Client, text: string, deadlineMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const call = (
      client as unknown as {
        echo: (req: Buffer, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, res?: Buffer) => void) => void;
      }
    ).echo;
    call.call(client, Buffer.from(text), { deadline: Date.now() + deadlineMs }, (e, res) =>
      e ? reject(e) : resolve(res!.toString()),
    );
  });
}
