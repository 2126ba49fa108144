// The Kubernetes manifests (deploy/kubernetes/): no cluster runs here, so they are checked
// offline: each object against its kind's official schema, then what makes them a working
// cluster (manifest-checks.ts). The second test breaks one thing at a time in a copy and expects
// the check that guards it to name it, so that no check passes vacuously.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { at, checkManifests, loadManifests, type ImageFacts, type Manifest, type Obj } from './manifest-checks.js';
import { readDockerfile, repoRoot } from './dockerfile.js';

const dir = join(repoRoot, 'deploy', 'kubernetes');

/** The image's user and exposed ports, from the Dockerfile's last stage. */
function imageFacts(): ImageFacts {
  const runtime = readDockerfile().at(-1)!;
  const user = runtime.instructions.find((i) => i.keyword === 'USER')?.args ?? '';
  const exposed = runtime.instructions.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/).map(Number));
  return { uid: Number(user.split(':')[0]), exposedPorts: exposed };
}

test('the manifests pass the schemas and the checks; every file of the folder is in the kustomization', () => {
  const manifests = loadManifests(dir);
  assert.deepEqual(checkManifests(manifests, imageFacts()), []);
  const kinds = manifests.map((m) => String(m.doc.kind)).sort();
  assert.deepEqual(kinds, [
    'ConfigMap',
    'Namespace',
    'PodDisruptionBudget',
    'PodDisruptionBudget',
    'Service',
    'Service',
    'Service',
    'StatefulSet',
    'StatefulSet',
  ]);
  const listed = new Set(manifests.map((m) => m.file));
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml'))
    assert.ok(listed.has(file), `${file} is listed in kustomization.yaml`);
});

/** The first object of `kind` named `name` in a copy of the manifests. */
function find(manifests: Manifest[], kind: string, name: string): Obj {
  const found = manifests.find((m) => m.doc.kind === kind && at(m.doc, 'metadata.name') === name);
  assert.ok(found, `${kind}/${name}`);
  return found.doc;
}

const brokerOf = (manifests: Manifest[], name: string): Obj => (at(find(manifests, 'StatefulSet', name), 'spec.template.spec.containers') as Obj[])[0]!;
const podOf = (manifests: Manifest[], name: string): Obj => at(find(manifests, 'StatefulSet', name), 'spec.template.spec') as Obj;
const clusterText = (manifests: Manifest[]): Obj => at(find(manifests, 'ConfigMap', 'mamba-cluster'), 'data') as Obj;

test('each check names what it guards when that thing is broken in a copy', () => {
  const original = loadManifests(dir);
  const rows: Array<[string, (m: Manifest[]) => void, RegExp]> = [
    [
      'a port of the wrong type (schema)',
      (m) => ((brokerOf(m, 'mamba-g1').ports as Obj[])[0]!.containerPort = '7101'),
      /StatefulSet\/mamba-g1: schema: .*containerPort must be integer/,
    ],
    ['an unknown kind', (m) => (find(m, 'Service', 'mamba').kind = 'Sevrice'), /Sevrice\/mamba: apiVersion\/kind not among/],
    [
      'readiness on /metrics',
      (m) => ((at(brokerOf(m, 'mamba-g1'), 'readinessProbe.httpGet') as Obj).path = '/metrics'),
      /mamba-g1: readinessProbe must GET \/readyz/,
    ],
    [
      'liveness on the client port',
      (m) => ((at(brokerOf(m, 'mamba-g2'), 'livenessProbe.httpGet') as Obj).port = 'client'),
      /mamba-g2: livenessProbe must use the metrics port 7301/,
    ],
    [
      'a PDB over the other group',
      (m) => ((at(find(m, 'PodDisruptionBudget', 'mamba-g1'), 'spec.selector.matchLabels') as Obj)['mamba-group'] = 'g2'),
      /StatefulSet\/mamba-g2: one PodDisruptionBudget over its pods expected, found 2/,
    ],
    [
      'a PDB allowing two down',
      (m) => ((find(m, 'PodDisruptionBudget', 'mamba-g2').spec as Obj).maxUnavailable = 2),
      /PodDisruptionBudget\/mamba-g2: maxUnavailable must be 1/,
    ],
    [
      'a headless service hiding pods that are not ready',
      (m) => delete (find(m, 'Service', 'mamba-g1').spec as Obj).publishNotReadyAddresses,
      /Service\/mamba-g1: publishNotReadyAddresses must be true/,
    ],
    ['ordered pod start', (m) => delete (find(m, 'StatefulSet', 'mamba-g2').spec as Obj).podManagementPolicy, /mamba-g2: podManagementPolicy must be Parallel/],
    [
      'four replicas for three brokers',
      (m) => ((find(m, 'StatefulSet', 'mamba-g1').spec as Obj).replicas = 4),
      /mamba-g1: replicas 4, but the cluster file lists 3 brokers/,
    ],
    [
      'a cluster file the broker refuses',
      (m) => (clusterText(m)['cluster.yaml'] = String(clusterText(m)['cluster.yaml']).replace('host: mamba-g1-1.mamba-g1.mamba.svc', 'host: mamba_g1_1')),
      /ConfigMap\/mamba-cluster: .*groups\[0\]\.brokers\[1\]\.host: "mamba_g1_1" is neither an IPv4 address nor a DNS name/,
    ],
    [
      'a broker id that is not its pod name',
      (m) => (clusterText(m)['cluster.yaml'] = String(clusterText(m)['cluster.yaml']).replace('id: mamba-g2-2,', 'id: b6,')),
      /mamba-g2: broker 2 of the cluster file is b6, but its pod is mamba-g2-2/,
    ],
    [
      'a host outside the headless service',
      (m) =>
        (clusterText(m)['cluster.yaml'] = String(clusterText(m)['cluster.yaml']).replace('host: mamba-g2-0.mamba-g2.mamba.svc', 'host: mamba-g2-0.mamba.svc')),
      /mamba-g2: broker mamba-g2-0: host mamba-g2-0\.mamba\.svc is not mamba-g2-0\.mamba-g2\.mamba\.svc/,
    ],
    [
      'the peer port not a container port',
      (m) => (brokerOf(m, 'mamba-g1').ports = (brokerOf(m, 'mamba-g1').ports as Obj[]).filter((p) => p.name !== 'peer')),
      /mamba-g1: broker mamba-g1-0: peerPort 7201 is not a container port/,
    ],
    ['no volume claim templates', (m) => delete (find(m, 'StatefulSet', 'mamba-g1').spec as Obj).volumeClaimTemplates, /mamba-g1: no volumeClaimTemplates/],
    [
      'running as root',
      (m) => ((podOf(m, 'mamba-g2').securityContext as Obj).runAsUser = 0),
      /mamba-g2: securityContext.runAsUser must be the image's user 10001/,
    ],
    [
      'a writable root filesystem',
      (m) => ((brokerOf(m, 'mamba-g1').securityContext as Obj).readOnlyRootFilesystem = false),
      /mamba-g1: the container must have a read-only root/,
    ],
    [
      'anti-affinity across groups',
      (m) => {
        const [term] = at(podOf(m, 'mamba-g1'), 'affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution') as Obj[];
        delete (at(term, 'labelSelector.matchLabels') as Obj)['mamba-group'];
      },
      /mamba-g1: the anti-affinity also keeps apart pods of another group/,
    ],
    ['no memory limit', (m) => delete (at(brokerOf(m, 'mamba-g2'), 'resources.limits') as Obj).memory, /mamba-g2: resources\.limits\.memory is not set/],
    [
      'the broker id not from the pod name',
      (m) => ((brokerOf(m, 'mamba-g1').env as Obj[])[0] = { name: 'MAMBA_BROKER_ID', value: 'b1' }),
      /mamba-g1: MAMBA_BROKER_ID must come from the pod name/,
    ],
    [
      'a cluster file path that is not mounted',
      (m) => (brokerOf(m, 'mamba-g1').args = ['broker', '--cluster', '/etc/other/cluster.yaml']),
      /mamba-g1: --cluster \/etc\/other\/cluster\.yaml is not a key of a ConfigMap mounted at \/etc\/other/,
    ],
    [
      'no client service',
      (m) => ((find(m, 'Service', 'mamba').spec as Obj).selector = { 'mamba-group': 'g1' }),
      /^no client Service selecting the brokers of every group$/,
    ],
    [
      'an object in another namespace',
      (m) => ((find(m, 'ConfigMap', 'mamba-cluster').metadata as Obj).namespace = 'default'),
      /ConfigMap\/mamba-cluster: not in namespace mamba/,
    ],
  ];
  for (const [what, breakIt, expected] of rows) {
    const copy = structuredClone(original);
    breakIt(copy);
    const problems = checkManifests(copy, imageFacts());
    assert.ok(
      problems.some((p) => expected.test(p)),
      `${what}: expected a problem matching ${expected}, got:\n${problems.join('\n')}`,
    );
  }
  // The copies were copies.
  assert.deepEqual(checkManifests(original, imageFacts()), []);
});
