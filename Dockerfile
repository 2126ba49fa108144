# syntax=docker/dockerfile:1
# The Mamba MQ broker image (README, Deploy):
#   docker build -t mamba-mq:0.1.0 .
#   docker run -e MAMBA_BROKER_ID=b1 -v "$PWD/cluster.yaml:/etc/mamba/cluster.yaml:ro" -v mamba-b1:/var/lib/mamba mamba-mq:0.1.0
# The command is `node dist/src/cli/main.js broker --cluster /etc/mamba/cluster.yaml`, the broker id
# from MAMBA_BROKER_ID. The cluster file should say `listenHost: 0.0.0.0` and `dataDir: /var/lib/mamba`.
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: the native addon (node-gyp: python3, make, g++) and the TypeScript, by `make build`
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# Every dependency (the build needs tsc, node-gyp and node-addon-api); the Makefile's marker says
# they are installed, so `make build` does not install them again.
RUN npm ci --no-audit --no-fund && touch node_modules/.installed
COPY Makefile binding.gyp tsconfig.json ./
COPY native ./native
COPY proto ./proto
COPY src ./src
RUN make build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: Node, the compiled broker, the addon, production dependencies and the protos
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    MAMBA_METRICS_PORT=7301
# A fixed numeric uid/gid, so that an orchestrator can check runAsNonRoot and set fsGroup.
RUN groupadd --system --gid 10001 mamba \
 && useradd --system --uid 10001 --gid mamba --home-dir /var/lib/mamba --no-create-home --shell /usr/sbin/nologin mamba \
 && mkdir -p /var/lib/mamba /etc/mamba \
 && chown mamba:mamba /var/lib/mamba
WORKDIR /opt/mamba
# package.json says the compiled files are ES modules; the addon is found by walking up from dist/.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/build/Release/mamba_native.node ./build/Release/mamba_native.node
COPY --from=build /src/proto ./proto
USER 10001:10001
VOLUME ["/var/lib/mamba"]
# client (gRPC), peer (Raft), metrics and probes (HTTP): the ports of the cluster files under deploy/
EXPOSE 7101 7201 7301
# The process answers on its metrics port (GET /healthz); readiness (/readyz) is for orchestrators.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.MAMBA_METRICS_PORT + '/healthz', { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["broker", "--cluster", "/etc/mamba/cluster.yaml"]
