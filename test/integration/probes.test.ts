// The orchestrator's probes on real brokers (DESIGN §12, Deployment): every broker answers
// GET /healthz on its metrics port while its process runs; GET /readyz is 200 on all three once
// the group has a leader (the leader, and followers fetching from it), and 503 with a reason on
// a broker left alone: a follower whose leader and other follower were killed stops hearing a
// leader, and a leader whose followers were killed steps down (check-quorum) and hears no one.
// Restarted, the group is ready again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestCluster, waitFor } from './cluster-harness.js';

interface Probe {
  status: number;
  body: Record<string, unknown>;
}

/** GET http://host:metricsPort/<path>, or undefined when the broker does not answer within a second. */
async function probe(cluster: TestCluster, id: string, path: '/healthz' | '/readyz'): Promise<Probe | undefined> {
  const b = cluster.broker(id);
  try {
    const response = await fetch(`http://${b.host}:${b.metricsPort}${path}`, { signal: AbortSignal.timeout(1000) });
    assert.equal(response.headers.get('content-type'), 'application/json', `${id} ${path} answers JSON`);
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  } catch (error) {
    if (error instanceof assert.AssertionError) throw error;
    return undefined; // not listening (killed) or too slow: the caller's wait decides
  }
}

/** Waits until every broker in `ids` answers /readyz 200; returns their bodies by id. */
async function waitAllReady(cluster: TestCluster, ids: string[], timeoutMs: number): Promise<Map<string, Record<string, unknown>>> {
  return waitFor(`/readyz 200 on ${ids.join(', ')}`, timeoutMs, async () => {
    const bodies = new Map<string, Record<string, unknown>>();
    for (const id of ids) {
      const answer = await probe(cluster, id, '/readyz');
      if (answer?.status !== 200) return undefined;
      bodies.set(id, answer.body);
    }
    return bodies;
  });
}

/** Waits until `id` answers /readyz 503; returns the body. */
async function waitNotReady(cluster: TestCluster, id: string, timeoutMs: number): Promise<Record<string, unknown>> {
  return waitFor(`/readyz 503 on ${id}`, timeoutMs, async () => {
    const answer = await probe(cluster, id, '/readyz');
    return answer?.status === 503 ? answer.body : undefined;
  });
}

test('/healthz on every broker; /readyz 200 on all three with a leader, 503 on a broker left alone', { timeout: 180_000 }, async () => {
  const cluster = await TestCluster.start();
  try {
    const ids = cluster.brokers.map((b) => b.id);
    for (const id of ids) {
      const health = await waitFor(`/healthz on ${id}`, 10_000, () => probe(cluster, id, '/healthz'));
      assert.equal(health.status, 200, `${id} /healthz: ${JSON.stringify(health.body)}`);
      assert.deepEqual([health.body.up, health.body.broker, health.body.group], [true, id, 'g1']);
    }

    // All three ready once a leader exists: the leader as such, the followers naming it.
    const leader = (await cluster.waitForLeader('g1', 20_000)).leaderId;
    const ready = await waitAllReady(cluster, ids, 20_000);
    const followers = ids.filter((id) => id !== leader);
    assert.deepEqual(ready.get(leader), { ready: true, role: 'leader', leader });
    for (const id of followers) {
      const body = ready.get(id)!;
      assert.deepEqual([body.ready, body.role, body.leader], [true, 'follower', leader], `${id}: ${JSON.stringify(body)}`);
      assert.ok(typeof body.lastFetchAgoMs === 'number' && body.lastFetchAgoMs <= 300, `${id} fetched within the election timeout: ${JSON.stringify(body)}`);
    }

    // Kill the leader and one follower: the other follower hears no leader and turns 503 within
    // a bound (election timeout 300 ms plus its jitter, far below the 10 s allowed); its process
    // is still up.
    const [alone, killedFollower] = followers as [string, string];
    await cluster.kill(leader);
    await cluster.kill(killedFollower);
    const startedMs = Date.now();
    const lonelyFollower = await waitNotReady(cluster, alone, 10_000);
    assert.match(String(lonelyFollower.reason), /^no fetch from a leader for \d+ ms \(election timeout 300 ms; (follower|prospective|candidate)\)$/);
    assert.equal(lonelyFollower.ready, false);
    assert.ok(Date.now() - startedMs < 10_000);
    assert.equal((await probe(cluster, alone, '/healthz'))?.status, 200, `${alone} is alive though not ready`);

    // Back together: ready again on all three.
    cluster.launch(leader);
    cluster.launch(killedFollower);
    const newLeader = (await cluster.waitForLeader('g1', 30_000)).leaderId;
    await waitAllReady(cluster, ids, 30_000);

    // Kill both followers: the leader steps down once no majority fetches (check-quorum, 600 ms)
    // and, having fetched from no leader since it started, is not ready.
    for (const id of ids.filter((i) => i !== newLeader)) await cluster.kill(id);
    const formerLeader = await waitNotReady(cluster, newLeader, 10_000);
    assert.notEqual(formerLeader.role, 'leader', JSON.stringify(formerLeader));
    assert.match(String(formerLeader.reason), /^no fetch from a leader /);
    assert.equal((await probe(cluster, newLeader, '/healthz'))?.status, 200, `${newLeader} is alive though not ready`);
  } finally {
    await cluster.stop();
  }
});
