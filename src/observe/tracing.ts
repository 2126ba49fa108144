// The OpenTelemetry trace SDK, configured from broker settings or client options. Code paths use
// only the API (a Tracer handed to them); this module builds the provider behind it. The provider
// is not registered globally: a broker and a client in one process each keep their own.
import type { Tracer } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';

export interface TracingSettings {
  /** OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces; '' = tracing off. */
  otlpEndpoint: string;
  /** Share of new traces recorded (0..1); spans under a sampled parent follow the parent. */
  samplingRatio: number;
}

export const defaultTracingSettings: TracingSettings = { otlpEndpoint: '', samplingRatio: 1 };

export interface TracingSetup extends Partial<TracingSettings> {
  serviceName: string;
  /** Resource attributes, e.g. the broker id (service.instance.id). */
  attributes?: Record<string, string>;
  /** Exports here instead of OTLP, span by span (tests use an in-memory exporter). */
  spanExporter?: SpanExporter;
}

export interface Tracing {
  /** null when tracing is off: callers then skip all span work. */
  readonly tracer: Tracer | null;
  /** Flushes what is buffered and stops exporting. */
  shutdown(): Promise<void>;
}

export const tracingOff: Tracing = { tracer: null, shutdown: async () => {} };

const exportQueueSpansMax = 4096;

export function startTracing(setup: TracingSetup): Tracing {
  const endpoint = setup.otlpEndpoint ?? '';
  if (!setup.spanExporter && endpoint === '') return tracingOff;
  const ratio = setup.samplingRatio ?? defaultTracingSettings.samplingRatio;
  if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`tracing samplingRatio ${ratio} is outside 0..1`);
  const processor: SpanProcessor = setup.spanExporter
    ? new SimpleSpanProcessor(setup.spanExporter)
    : new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint }), { maxQueueSize: exportQueueSpansMax });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': setup.serviceName, ...setup.attributes }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }),
    spanProcessors: [processor],
  });
  return {
    tracer: provider.getTracer('mamba-mq'),
    shutdown: () => provider.shutdown(),
  };
}
