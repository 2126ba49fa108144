// gRPC server metering: requests by method and status code with their handling time (a server
// interceptor), and message bytes in and out (the service's own serializers, wrapped, so the
// sizes are exact and cost no second encoding).
import * as grpc from '@grpc/grpc-js';

export interface GrpcMeter {
  networkBytes(api: string, receivedBytes: number, sentBytes: number): void;
  grpcRequest(api: string, method: string, code: string, durationSeconds: number): void;
  /** One request message on a client- or bidirectional stream (a long-lived stream ends rarely). */
  grpcStreamMessage(api: string, method: string): void;
}

const statusNames = new Map<number, string>(
  Object.entries(grpc.status)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);

function methodName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function interceptor(meter: GrpcMeter, api: string): grpc.ServerInterceptor {
  return (descriptor, call) => {
    const startMs = performance.now();
    const method = methodName(descriptor.path);
    return new grpc.ServerInterceptingCall(call, {
      sendStatus(status, next) {
        meter.grpcRequest(api, method, statusNames.get(status.code ?? grpc.status.UNKNOWN) ?? String(status.code), (performance.now() - startMs) / 1000);
        next(status);
      },
    });
  };
}

function meteredDefinition(definition: grpc.ServiceDefinition, meter: GrpcMeter, api: string): grpc.ServiceDefinition {
  const metered: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition) as Array<[string, grpc.MethodDefinition<unknown, unknown>]>) {
    const streamName = method.requestStream ? methodName(method.path) : null;
    metered[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        meter.networkBytes(api, bytes.byteLength, 0);
        if (streamName !== null) meter.grpcStreamMessage(api, streamName);
        return method.requestDeserialize(bytes);
      },
      responseSerialize: (value: unknown) => {
        const bytes = method.responseSerialize(value);
        meter.networkBytes(api, 0, bytes.byteLength);
        return bytes;
      },
    };
  }
  return metered as grpc.ServiceDefinition;
}

/** A gRPC server whose every service is metered under `api` (e.g. "client", "peer"). */
export class MeteredServer extends grpc.Server {
  constructor(
    options: grpc.ServerOptions,
    private readonly meter: GrpcMeter,
    private readonly api: string,
  ) {
    super({ ...options, interceptors: [...(options.interceptors ?? []), interceptor(meter, api)] });
  }

  override addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    super.addService(meteredDefinition(service, this.meter, this.api), implementation);
  }
}
