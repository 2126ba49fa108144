// Layering rules of src/ (DESIGN.md §2), checked by `make lint`: each folder imports only the
// folders below it, so the folder graph has no cycle and the Raft core and the log stay pure.
// The leaves beside them (assert.ts, errors.ts, validation.ts) import nothing of ours.
/** Folders `from` must not import: every src/ folder except its own and those listed in `may`. */
const layer = (from, may) => {
  const folders = ['log', 'raft', 'replica', 'broker', 'meta', 'protocol', 'rpc', 'gateway', 'client', 'observe', 'auth', 'config', 'backup', 'cli'];
  const others = folders.filter((f) => f !== from && !may.includes(f));
  return {
    name: `${from}-imports-only-${may.length ? may.join('-') : 'leaves'}`,
    comment: `src/${from}/ may import ${may.length ? may.map((f) => `src/${f}/`).join(', ') : 'no other folder'} (and the leaves)`,
    severity: 'error',
    from: { path: `^src/${from}/` },
    to: { path: `^src/(${others.join('|')})/` },
  };
};

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'a module cycle: split the shared part out (an interface where the data is declared)',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'leaves-import-nothing-of-ours',
      severity: 'error',
      from: { path: '^src/[^/]+\\.ts$' },
      to: { path: '^src/[^/]+/' },
    },
    layer('log', []),
    layer('raft', ['log']),
    layer('replica', ['raft', 'log']),
    layer('protocol', []),
    layer('auth', []),
    layer('observe', ['broker', 'replica', 'raft']),
    layer('broker', ['replica', 'raft', 'log', 'protocol']),
    layer('config', ['log', 'auth', 'observe', 'broker']),
    layer('client', ['protocol', 'auth', 'observe']),
    // Gateways (MQTT, STOMP) reach the cluster through the SDK (client), check keys and
    // permissions with auth, and make their spans with observe's message-trace helpers (the W3C
    // context messages carry); TLS material, config, metrics registry and tracer are handed in by
    // rpc, which composes them on the broker. Nothing of the broker's internals: the same path as gRPC.
    layer('gateway', ['client', 'auth', 'observe']),
    layer('rpc', ['broker', 'replica', 'raft', 'log', 'protocol', 'auth', 'observe', 'config', 'gateway']),
    layer('backup', ['broker', 'replica', 'raft', 'log', 'protocol', 'config']),
    layer('cli', ['client', 'config', 'auth', 'rpc', 'protocol', 'backup']),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
