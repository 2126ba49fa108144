// Checks of the Kubernetes manifests under deploy/kubernetes/, as a function that lists problems
// (so that a test can also show each check failing on a broken copy). Two layers:
//   1. every object against the official OpenAPI schema of its kind (kubernetes-models'
//      validators: types, required fields, enums; they do not reject unknown fields);
//   2. what makes these objects a working Mamba MQ cluster: the ConfigMap's cluster file parses
//      with the broker's own loader, its brokers are the StatefulSets' pods (id = pod name, host =
//      the pod's DNS name under the headless service), every configured port is a container
//      port, probes point at the metrics port (/readyz, /healthz), selectors (services, PDB,
//      anti-affinity) pick exactly one group's pods, volumes and security settings are there.
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { parseClusterConfig, type BrokerConfig, type ClusterConfig } from '../../src/config/cluster.js';

export type Obj = Record<string, unknown>;

export interface Manifest {
  file: string;
  doc: Obj;
}

/** What the image promises (the Dockerfile): the user it runs as and the ports it exposes. */
export interface ImageFacts {
  uid: number;
  exposedPorts: number[];
}

function obj(value: unknown): Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Obj) : {};
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** The value at a dotted path (`spec.template.spec`), undefined when any step is missing. */
export function at(value: unknown, path: string): unknown {
  let current: unknown = value;
  for (const key of path.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Obj)[key];
  }
  return current;
}

/** The objects of the files a kustomization.yaml lists, in its order. */
export function loadManifests(dir: string): Manifest[] {
  const kustomization = obj(parseAllDocuments(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'))[0]?.toJS());
  const manifests: Manifest[] = [];
  for (const file of list(kustomization.resources)) {
    if (typeof file !== 'string') throw new Error(`kustomization.yaml: a resource that is not a file name: ${JSON.stringify(file)}`);
    for (const document of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]!.message}`);
      const doc = document.toJS() as unknown;
      if (doc !== null) manifests.push({ file, doc: obj(doc) });
    }
  }
  return manifests;
}

type Model = { validate(): void };
/** The kinds these manifests may hold, by apiVersion/kind, with their schema's validator. */
const models: Record<string, (doc: Obj) => Model> = {
  'v1/Namespace': (doc) => new Namespace(doc as ConstructorParameters<typeof Namespace>[0]),
  'v1/ConfigMap': (doc) => new ConfigMap(doc as ConstructorParameters<typeof ConfigMap>[0]),
  'v1/Service': (doc) => new Service(doc as ConstructorParameters<typeof Service>[0]),
  'apps/v1/StatefulSet': (doc) => new StatefulSet(doc as ConstructorParameters<typeof StatefulSet>[0]),
  'policy/v1/PodDisruptionBudget': (doc) => new PodDisruptionBudget(doc as ConstructorParameters<typeof PodDisruptionBudget>[0]),
};

const nameOf = (m: Manifest): string => `${m.file}: ${String(m.doc.kind)}/${String(at(m.doc, 'metadata.name'))}`;

/** True when every label of `selector` is on `labels` (a matchLabels selector selects them). */
function selects(selector: unknown, labels: unknown): boolean {
  const wanted = Object.entries(obj(selector));
  return wanted.length > 0 && wanted.every(([k, v]) => obj(labels)[k] === v);
}

export function checkManifests(manifests: Manifest[], image: ImageFacts): string[] {
  const problems: string[] = [];
  const problem = (m: Manifest, text: string): void => {
    problems.push(`${nameOf(m)}: ${text}`);
  };
  for (const m of manifests) {
    const model = models[`${String(m.doc.apiVersion)}/${String(m.doc.kind)}`];
    if (!model) {
      problem(m, `apiVersion/kind not among ${Object.keys(models).join(', ')}`);
      continue;
    }
    try {
      model(m.doc).validate();
    } catch (error) {
      problem(m, `schema: ${(error as Error).message}`);
    }
  }
  const ofKind = (kind: string): Manifest[] => manifests.filter((m) => m.doc.kind === kind);
  const namespaces = ofKind('Namespace');
  if (namespaces.length !== 1) problems.push(`one Namespace expected, found ${namespaces.length}`);
  const namespace = String(at(namespaces[0]?.doc, 'metadata.name'));
  for (const m of manifests) if (m.doc.kind !== 'Namespace' && at(m.doc, 'metadata.namespace') !== namespace) problem(m, `not in namespace ${namespace}`);

  const statefulSets = ofKind('StatefulSet');
  if (statefulSets.length === 0) problems.push('no StatefulSet');
  const podLabels = new Map(statefulSets.map((s) => [s, obj(at(s.doc, 'spec.template.metadata.labels'))]));
  const context: GroupContext = { manifests, namespace, image, podLabels, problem, general: (text) => problems.push(text) };
  let cluster: ClusterConfig | null = null;
  for (const s of statefulSets) {
    const parsed = checkStatefulSet(s, context);
    cluster ??= parsed;
  }
  if (cluster) {
    const groupsWithPods = new Set(statefulSets.map((s) => podLabels.get(s)!['mamba-group']));
    for (const group of cluster.groups) if (!groupsWithPods.has(group.id)) problems.push(`group ${group.id} of the cluster file has no StatefulSet`);
    checkClientService(context, cluster);
  }
  return problems;
}

interface GroupContext {
  manifests: Manifest[];
  namespace: string;
  image: ImageFacts;
  /** Each StatefulSet's pod labels. */
  podLabels: Map<Manifest, Obj>;
  problem(m: Manifest, text: string): void;
  /** A problem of the whole set (something missing). */
  general(text: string): void;
}

/** Checks one group's StatefulSet and the objects around it; returns the cluster file it mounts, if it parses. */
function checkStatefulSet(s: Manifest, c: GroupContext): ClusterConfig | null {
  const labels = c.podLabels.get(s)!;
  const otherGroups = [...c.podLabels].filter(([other]) => other !== s).map(([, l]) => l);
  const group = labels['mamba-group'];
  if (typeof group !== 'string') c.problem(s, 'pod labels have no mamba-group');
  if (!selects(at(s.doc, 'spec.selector.matchLabels'), labels)) c.problem(s, 'spec.selector.matchLabels does not select its own pod labels');
  if (at(s.doc, 'spec.podManagementPolicy') !== 'Parallel')
    c.problem(s, 'podManagementPolicy must be Parallel: an ordered start waits for pod 0 to be ready, which needs a leader, which needs two pods');
  const pod = obj(at(s.doc, 'spec.template.spec'));
  const containers = list(pod.containers).map(obj);
  const container = containers.find((k) => k.name === 'broker');
  if (containers.length !== 1 || !container) {
    c.problem(s, 'one container named broker expected');
    return null;
  }
  const cluster = mountedClusterFile(s, container, pod, c);
  checkSecurity(s, pod, container, c);
  checkAffinity(s, pod, labels, otherGroups, c);
  checkBudget(s, labels, otherGroups, c);
  const resources = obj(container.resources);
  for (const key of ['requests.cpu', 'requests.memory', 'limits.memory']) if (at(resources, key) === undefined) c.problem(s, `resources.${key} is not set`);
  if (cluster === null || typeof group !== 'string') return cluster;
  const brokers = cluster.groups.find((g) => g.id === group)?.brokers;
  if (!brokers) {
    c.problem(s, `group ${group} is not in the cluster file`);
    return cluster;
  }
  checkBrokers(s, brokers, container, c);
  return cluster;
}

/** The cluster file the container's --cluster names, from the ConfigMap mounted there, parsed by the broker's own loader. */
function mountedClusterFile(s: Manifest, container: Obj, pod: Obj, c: GroupContext): ClusterConfig | null {
  const args = list(container.args).map(String);
  const file = args[args.indexOf('--cluster') + 1];
  if (!args.includes('--cluster') || file === undefined) {
    c.problem(s, 'the container args name no --cluster file');
    return null;
  }
  const mount = list(container.volumeMounts)
    .map(obj)
    .find((v) => v.mountPath === dirname(file));
  const volume = list(pod.volumes)
    .map(obj)
    .find((v) => mount !== undefined && v.name === mount.name);
  const configMapName = at(volume, 'configMap.name');
  const configMap = c.manifests.find((m) => m.doc.kind === 'ConfigMap' && at(m.doc, 'metadata.name') === configMapName);
  const text = obj(at(configMap?.doc, 'data'))[basename(file)]; // a key with a dot: not through at()
  if (!configMap || typeof text !== 'string') {
    c.problem(s, `--cluster ${file} is not a key of a ConfigMap mounted at ${dirname(file)}`);
    return null;
  }
  try {
    return parseClusterConfig(text, `${nameOf(configMap)} ${basename(file)}`, '/');
  } catch (error) {
    c.problem(configMap, (error as Error).message);
    return null;
  }
}

/** Container ports by name and number; a probe or service port (number or name) as a number. */
function containerPorts(container: Obj): Map<string, number> {
  const ports = new Map<string, number>();
  for (const p of list(container.ports).map(obj)) if (typeof p.containerPort === 'number') ports.set(String(p.name ?? p.containerPort), p.containerPort);
  return ports;
}

function portNumber(port: unknown, ports: Map<string, number>): number | undefined {
  return typeof port === 'number' ? port : typeof port === 'string' ? ports.get(port) : undefined;
}

/** The group's brokers are the pods: ids, hosts, ports, probes, data volume. */
function checkBrokers(s: Manifest, brokers: BrokerConfig[], container: Obj, c: GroupContext): void {
  const name = String(at(s.doc, 'metadata.name'));
  const service = String(at(s.doc, 'spec.serviceName'));
  if (at(s.doc, 'spec.replicas') !== brokers.length)
    c.problem(s, `replicas ${String(at(s.doc, 'spec.replicas'))}, but the cluster file lists ${brokers.length} brokers`);
  const env = list(container.env)
    .map(obj)
    .find((e) => e.name === 'MAMBA_BROKER_ID');
  if (at(env, 'valueFrom.fieldRef.fieldPath') !== 'metadata.name') c.problem(s, 'MAMBA_BROKER_ID must come from the pod name (fieldRef metadata.name)');
  const ports = containerPorts(container);
  const numbers = new Set(ports.values());
  brokers.forEach((b, i) => {
    const pod = `${name}-${i}`;
    if (b.id !== pod) c.problem(s, `broker ${i} of the cluster file is ${b.id}, but its pod is ${pod}`);
    if (b.host !== `${pod}.${service}.${c.namespace}.svc`) c.problem(s, `broker ${b.id}: host ${b.host} is not ${pod}.${service}.${c.namespace}.svc`);
    if (b.listenHost !== '0.0.0.0') c.problem(s, `broker ${b.id}: listenHost ${b.listenHost}, not 0.0.0.0 (the pod's DNS name may not resolve yet at start)`);
    for (const key of ['clientPort', 'peerPort', 'metricsPort'] as const) {
      if (!numbers.has(b[key])) c.problem(s, `broker ${b.id}: ${key} ${b[key]} is not a container port`);
      if (!c.image.exposedPorts.includes(b[key])) c.problem(s, `broker ${b.id}: ${key} ${b[key]} is not exposed by the image`);
    }
  });
  const first = brokers[0]!;
  const probes: Array<[string, string]> = [
    ['readinessProbe', '/readyz'],
    ['livenessProbe', '/healthz'],
  ];
  if (container.startupProbe !== undefined) probes.push(['startupProbe', '/healthz']);
  for (const [probe, path] of probes) {
    if (at(container, `${probe}.httpGet.path`) !== path) c.problem(s, `${probe} must GET ${path}`);
    if (portNumber(at(container, `${probe}.httpGet.port`), ports) !== first.metricsPort)
      c.problem(s, `${probe} must use the metrics port ${first.metricsPort}`);
  }
  checkDataVolume(s, first, container, c);
  checkHeadlessService(s, service, [first.clientPort, first.peerPort, first.metricsPort], c);
}

function checkDataVolume(s: Manifest, broker: BrokerConfig, container: Obj, c: GroupContext): void {
  const templates = list(at(s.doc, 'spec.volumeClaimTemplates')).map(obj);
  if (templates.length === 0) {
    c.problem(s, 'no volumeClaimTemplates: the data would die with the pod');
    return;
  }
  const mount = list(container.volumeMounts)
    .map(obj)
    .find((v) => typeof v.mountPath === 'string' && broker.dataDir.startsWith(`${v.mountPath}/`));
  const template = templates.find((t) => mount !== undefined && at(t, 'metadata.name') === mount.name);
  if (!template) {
    c.problem(s, `the data directory ${broker.dataDir} is not on a volume claim template's mount`);
    return;
  }
  if (!list(at(template, 'spec.accessModes')).includes('ReadWriteOnce')) c.problem(s, 'the data volume must be ReadWriteOnce');
  if (at(template, 'spec.resources.requests.storage') === undefined) c.problem(s, 'the data volume requests no storage');
}

function checkHeadlessService(s: Manifest, name: string, ports: number[], c: GroupContext): void {
  const service = c.manifests.find((m) => m.doc.kind === 'Service' && at(m.doc, 'metadata.name') === name);
  if (!service) {
    c.problem(s, `serviceName ${name}: no such Service`);
    return;
  }
  if (at(service.doc, 'spec.clusterIP') !== 'None') c.problem(service, 'must be headless (clusterIP: None) to give each pod a DNS name');
  if (at(service.doc, 'spec.publishNotReadyAddresses') !== true)
    c.problem(service, 'publishNotReadyAddresses must be true: brokers reach each other by these names before any is ready');
  const labels = c.podLabels.get(s)!;
  if (!selects(at(service.doc, 'spec.selector'), labels)) c.problem(service, `does not select the pods of ${nameOf(s)}`);
  for (const [other, otherLabels] of c.podLabels)
    if (other !== s && selects(at(service.doc, 'spec.selector'), otherLabels)) c.problem(service, `also selects the pods of ${nameOf(other)}`);
  const served = list(at(service.doc, 'spec.ports')).map((p) => at(p, 'port'));
  for (const port of ports) if (!served.includes(port)) c.problem(service, `port ${port} is not served`);
}

function checkSecurity(s: Manifest, pod: Obj, container: Obj, c: GroupContext): void {
  const podSecurity = obj(pod.securityContext);
  if (podSecurity.runAsNonRoot !== true) c.problem(s, 'securityContext.runAsNonRoot must be true');
  if (podSecurity.runAsUser !== c.image.uid) c.problem(s, `securityContext.runAsUser must be the image's user ${c.image.uid}`);
  if (podSecurity.fsGroup !== c.image.uid) c.problem(s, `securityContext.fsGroup must be ${c.image.uid}, so that the data volume is writable`);
  const own = obj(container.securityContext);
  if (own.readOnlyRootFilesystem !== true) c.problem(s, 'the container must have a read-only root filesystem');
  if (own.allowPrivilegeEscalation !== false) c.problem(s, 'allowPrivilegeEscalation must be false');
  if (!list(at(own, 'capabilities.drop')).includes('ALL')) c.problem(s, 'capabilities must drop ALL');
}

function checkAffinity(s: Manifest, pod: Obj, labels: Obj, otherGroups: Obj[], c: GroupContext): void {
  const terms = list(at(pod, 'affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution')).map(obj);
  const term = terms.find((t) => t.topologyKey === 'kubernetes.io/hostname');
  const selector = at(term, 'labelSelector.matchLabels');
  if (!term || !selects(selector, labels)) c.problem(s, "no required pod anti-affinity per node (kubernetes.io/hostname) over the group's pods");
  else if (otherGroups.some((l) => selects(selector, l))) c.problem(s, 'the anti-affinity also keeps apart pods of another group');
}

function checkBudget(s: Manifest, labels: Obj, otherGroups: Obj[], c: GroupContext): void {
  const budgets = c.manifests.filter((m) => m.doc.kind === 'PodDisruptionBudget' && selects(at(m.doc, 'spec.selector.matchLabels'), labels));
  if (budgets.length !== 1) {
    c.problem(s, `one PodDisruptionBudget over its pods expected, found ${budgets.length}`);
    return;
  }
  const budget = budgets[0]!;
  if (at(budget.doc, 'spec.maxUnavailable') !== 1) c.problem(budget, 'maxUnavailable must be 1');
  if (otherGroups.some((l) => selects(at(budget.doc, 'spec.selector.matchLabels'), l))) c.problem(budget, 'also selects the pods of another group');
}

/** A client Service (not headless) that selects the brokers of every group on the client port. */
function checkClientService(c: GroupContext, cluster: ClusterConfig): void {
  const clientPort = cluster.groups[0]!.brokers[0]!.clientPort;
  const services = c.manifests.filter((m) => m.doc.kind === 'Service' && at(m.doc, 'spec.clusterIP') !== 'None');
  const client = services.find((m) => [...c.podLabels.values()].every((labels) => selects(at(m.doc, 'spec.selector'), labels)));
  if (!client) {
    c.general('no client Service selecting the brokers of every group');
    return;
  }
  const port = list(at(client.doc, 'spec.ports'))
    .map(obj)
    .find((p) => p.port === clientPort);
  if (!port || (port.targetPort !== 'client' && port.targetPort !== clientPort)) c.problem(client, `must serve the client port ${clientPort}`);
}
