#!/usr/bin/env node
// The `mambamq` command. Exit codes: 0 success, 1 failure at run time, 2 usage error.
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Command, CommanderError, Option, InvalidArgumentError as UsageError } from 'commander';
import { MambaError } from '../errors.js';
import { ConfigError } from '../validation.js';
import { loadClusterConfig } from '../config/cluster.js';
import { MambaClient, type Ack, type OutgoingMessage, type ReplicaMember } from '../client/client.js';
import { keyCommand, securityOptions } from './keys.js';
import { startBrokers, stopBrokers, waitForLeaders, brokerAddresses, logFile } from './cluster-control.js';
import { consumerGroupJson, consumerGroupListJson, consumerGroupListText, consumerGroupText, statusJson, statusText } from './format.js';

const defaultBrokers = process.env.MAMBA_BROKERS ?? '127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103';

interface GlobalOptions {
  brokers: string;
  cluster?: string;
  json?: boolean;
  credentials?: string;
}

const program = new Command();
program
  .name('mambamq')
  .description(
    'Mamba MQ: a message broker on a Raft-replicated commit log.\nTry: mambamq status, mambamq topic create orders --queues 4, mambamq produce --topic orders hello',
  )
  .option('--brokers <list>', 'seed broker client addresses, comma separated (env MAMBA_BROKERS)', defaultBrokers)
  .option('--cluster <file>', 'take the seed brokers from a cluster file instead of --brokers')
  .option('--json', 'print machine-readable JSON instead of text')
  .option('--credentials <file>', 'access key file (env MAMBA_CREDENTIALS; default ./data/credentials, then ~/.mamba/credentials)')
  .exitOverride()
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

function globals(command: Command): GlobalOptions {
  return command.optsWithGlobals() as GlobalOptions;
}

function seedBrokers(command: Command): string[] {
  const options = globals(command);
  return options.cluster
    ? brokerAddresses(loadClusterConfig(options.cluster))
    : options.brokers
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
}

function clientFor(command: Command): MambaClient {
  return new MambaClient({
    brokers: seedBrokers(command),
    requestTimeoutMs: 5000,
    retry: { attemptsMax: 3, backoffMsInitial: 100 },
    ...clientSecurity(command),
  });
}

/** Access key and TLS for the clients the CLI makes (keys.ts: flags, environment, files, cluster file). */
function clientSecurity(command: Command): ReturnType<typeof securityOptions> {
  const options = globals(command);
  return securityOptions(options.cluster ? loadClusterConfig(options.cluster) : null, options.credentials);
}

async function withClient<T>(command: Command, work: (client: MambaClient) => Promise<T>): Promise<T> {
  const client = clientFor(command);
  try {
    return await work(client);
  } finally {
    client.close();
  }
}

function print(command: Command, json: unknown, text: string): void {
  process.stdout.write(globals(command).json ? `${JSON.stringify(json)}\n` : `${text}\n`);
}

function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`${name} must be a non-negative integer, got "${value}"`);
    return n;
  };
}

// ------------------------------------------------------------------ broker and cluster

program
  .command('broker')
  .description('run one broker of a cluster file in the foreground (needs --cluster <file>; logs: one JSON object a line on stdout)')
  // A container takes the id from its environment (the image's command names no broker).
  .addOption(new Option('--id <id>', "this broker's id in the cluster file, e.g. b1").env('MAMBA_BROKER_ID').makeOptionMandatory())
  .action(async (options: { id: string }, command: Command) => {
    const { startBroker } = await import('../rpc/broker-server.js');
    const running = await startBroker(loadClusterConfig(clusterFile(command)), options.id);
    const stop = (signal: string): void => {
      process.stderr.write(`mambamq broker ${options.id}: ${signal}, stopping\n`);
      running.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });

/** The global --cluster file, required by the `cluster` subcommands. */
function clusterFile(command: Command): string {
  const file = globals(command).cluster;
  if (!file) command.error(`error: ${command.name()} needs --cluster <file>`, { exitCode: 2, code: 'mambamq.usage' });
  return file!;
}

const cluster = program.command('cluster').description('start, stop and inspect every broker of a cluster file on this machine (needs --cluster <file>)');
cluster
  .command('up')
  .description('start the brokers of a cluster file in the background and wait for a leader in every group')
  .option('--wait-ms <ms>', 'how long to wait for leaders', positiveInt('--wait-ms'), 30_000)
  .action(async (options: { waitMs: number }, command: Command) => {
    const file = clusterFile(command);
    const config = loadClusterConfig(file);
    const { formatNewGroups } = await import('../rpc/storage-format.js');
    for (const outcome of formatNewGroups(config)) {
      if (globals(command).json) continue;
      if (outcome.formatted.length > 0) process.stderr.write(`group ${outcome.group} is new: formatted ${outcome.formatted.join(', ')}\n`);
      else if (outcome.skipped !== null && outcome.skipped !== 'group has data') process.stderr.write(`group ${outcome.group}: ${outcome.skipped}\n`);
    }
    const started = startBrokers(config, file);
    if (!globals(command).json)
      process.stderr.write(`started ${started.length ? started.join(', ') : 'nothing (all running)'}; logs in ${logFile(config, '<id>')}\n`);
    const groups = await waitForLeaders(
      config,
      options.waitMs,
      (text) => {
        if (!globals(command).json) process.stderr.write(`  ${text}\n`);
      },
      clientSecurity(command),
    );
    print(
      command,
      { started, groups: groups.map((g) => ({ id: g.id, leader: g.leaderId, epoch: g.epoch })) },
      groups.map((g) => `group ${g.id}: leader ${g.leaderId} (${g.replicas.find((r) => r.id === g.leaderId)?.address ?? '?'}), epoch ${g.epoch}`).join('\n'),
    );
  });
cluster
  .command('down')
  .description('stop the brokers that `cluster up` started for this cluster file')
  .action(async (_options: unknown, command: Command) => {
    const stopped = await stopBrokers(loadClusterConfig(clusterFile(command)));
    print(command, { stopped }, stopped.length ? `stopped ${stopped.join(', ')}` : 'no broker of this cluster was running');
  });
cluster
  .command('status')
  .description('leaders, epochs, high watermarks and lag of the cluster in a file')
  .action(async (_options: unknown, command: Command) => {
    clusterFile(command);
    await showStatus(command, false);
  });

const storage = program.command('storage').description("a broker's data directory: format a new one, show what one was formatted for (needs --cluster <file>)");
storage
  .command('format')
  .description(
    "format the data directories of a new group's brokers before their first start (never a replaced disk's: started unformatted, it joins as recovering and cannot repeat its old votes)",
  )
  .requiredOption('--broker <id...>', 'the brokers whose directories to format, e.g. --broker b1 b2 b3')
  .action(async (options: { broker: string[] }, command: Command) => {
    const config = loadClusterConfig(clusterFile(command));
    const { formatBrokerDirectory } = await import('../rpc/storage-format.js');
    const formats = options.broker.map((id) => formatBrokerDirectory(config, id));
    print(
      command,
      { formatted: formats },
      formats.map((f) => `formatted the directory of ${f.brokerId} (group ${f.group}, cluster ${f.cluster}): directory id ${f.directoryId}`).join('\n'),
    );
  });
storage
  .command('show')
  .description("what a broker's data directory was formatted for (or that it never was)")
  .requiredOption('--broker <id>', 'the broker, e.g. b1')
  .action(async (options: { broker: string }, command: Command) => {
    const config = loadClusterConfig(clusterFile(command));
    const { describeBrokerDirectory } = await import('../rpc/storage-format.js');
    const described = describeBrokerDirectory(config, options.broker);
    const text =
      described.format === null
        ? `${options.broker}: ${described.unused ? 'empty and not formatted: it would start as a replaced disk (recovering)' : 'holds data from before format records (its identity is its stored votes)'}`
        : `${options.broker}: formatted for broker ${described.format.brokerId} of group ${described.format.group}, cluster ${described.format.cluster}, directory id ${described.format.directoryId}, at ${new Date(described.format.formattedAtMs).toISOString()}${described.unused ? ' (never started)' : ''}`;
    print(command, described, text);
  });

program
  .command('status')
  .description('per group: leader, epoch, high watermark; per replica: role, end offset, lag, last fetch age; the read advice')
  .option('--watch', 'refresh every second until interrupted')
  .action(async (options: { watch?: boolean }, command: Command) => showStatus(command, !!options.watch));

async function showStatus(command: Command, watch: boolean): Promise<void> {
  await withClient(command, async (client) => {
    for (;;) {
      const groups = await client.describeCluster();
      if (watch && !globals(command).json) process.stdout.write('\u001b[2J\u001b[H');
      print(command, statusJson(groups), statusText(groups));
      if (!watch) return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  });
}

program.addCommand(keyCommand());

// ------------------------------------------------------------------ topics

const topic = program.command('topic').description('create, list, describe and delete topics');
topic
  .command('create <name>')
  .description('create a topic; its queues are spread over the groups')
  .option('--queues <n>', 'number of queues', positiveInt('--queues'), 4)
  .action(async (name: string, options: { queues: number }, command: Command) =>
    withClient(command, async (client) => {
      const created = await client.createTopic(name, options.queues);
      print(command, created, `created topic ${created.name} with ${created.queues} queues`);
    }),
  );
topic
  .command('list')
  .description('list topics')
  .action(async (_options: unknown, command: Command) =>
    withClient(command, async (client) => {
      const topics = await client.listTopics();
      print(command, { topics }, topics.length ? topics.map((t) => `${t.name}\t${t.queues} queues`).join('\n') : '(no topics)');
    }),
  );
topic
  .command('describe <name>')
  .description('queues of a topic: group, leader, start offset, high watermark')
  .action(async (name: string, _options: unknown, command: Command) =>
    withClient(command, async (client) => {
      const d = await client.describeTopic(name);
      const queues = d.queues.map((q) => ({
        queue: q.queue,
        group: q.group,
        leader: q.leaderId,
        startOffset: q.startOffset,
        highWatermark: q.highWatermark,
      }));
      print(
        command,
        { name: d.topic?.name ?? name, queues },
        [
          `topic ${d.topic?.name ?? name}: ${d.topic?.queues ?? queues.length} queues`,
          ...queues.map((q) => `  queue ${q.queue}\tgroup ${q.group}\tleader ${q.leader || '?'}\toffsets ${q.startOffset}..${q.highWatermark}`),
        ].join('\n'),
      );
    }),
  );
topic
  .command('delete <name>')
  .description('delete a topic and its messages in every group')
  .action(async (name: string, _options: unknown, command: Command) =>
    withClient(command, async (client) => {
      await client.deleteTopic(name);
      print(command, { deleted: name }, `deleted topic ${name}`);
    }),
  );

topic
  .command('add-queues <name>')
  .description('grow a topic by --count queues, placed by load over every group (existing queues stay where they are)')
  .requiredOption('--count <n>', 'how many queues to add', positiveInt('--count'))
  .action(async (name: string, options: { count: number }, command: Command) =>
    withClient(command, async (client) => {
      const grown = await client.addQueues(name, options.count);
      const added = grown.placement.slice(grown.placement.length - options.count);
      print(
        command,
        { topic: grown.topic?.name ?? name, queues: grown.placement.length, placement: grown.placement, metadataVersion: grown.metadataVersion },
        `topic ${name} has ${grown.placement.length} queues; added ${added.map((g, i) => `${grown.placement.length - options.count + i}→${g}`).join(', ')} (metadata version ${grown.metadataVersion})`,
      );
    }),
  );

// ------------------------------------------------------------------ cluster metadata and groups (issue 14)

program
  .command('metadata')
  .description('the cluster metadata: its version, the groups and their brokers, each topic and the group of each queue')
  .action(async (_options: unknown, command: Command) =>
    withClient(command, async (client) => {
      const metadata = await client.getMetadata();
      const text = [
        `metadata version ${metadata.version}${metadata.version === 0 ? ' (not bootstrapped yet: the cluster file is the truth)' : ''}`,
        ...metadata.groups.map((g) => `group ${g.id}: ${g.brokers.map((b) => `${b.id} ${b.host}:${b.clientPort}`).join(', ')}`),
        ...metadata.topics.map(
          (t) => `topic ${t.name}: ${t.placement.map((g, q) => `${q}→${g}`).join(' ')}${t.legacy ? ' (made before the metadata log)' : ''}`,
        ),
      ].join('\n');
      print(command, metadata, text);
    }),
  );

const group = program.command('group').description("the cluster's groups of brokers");
group
  .command('add')
  .description(
    'register a group, whose brokers run with a cluster file naming it, in the cluster metadata: new topics and added queues may then live on it (needs --cluster <file>)',
  )
  .requiredOption('--group <id>', 'the group of the cluster file to register, e.g. g3')
  .action(async (options: { group: string }, command: Command) => {
    const config = loadClusterConfig(clusterFile(command));
    const entry = config.groups.find((g) => g.id === options.group);
    if (!entry) throw new UsageError(`the cluster file has no group "${options.group}" (groups: ${config.groups.map((g) => g.id).join(', ')})`);
    await withClient(command, async (client) => {
      const metadata = await client.addGroup({ id: entry.id, brokers: entry.brokers.map((b) => ({ id: b.id, host: b.host, clientPort: b.clientPort })) });
      print(
        command,
        { group: entry.id, brokers: entry.brokers.map((b) => b.id), metadataVersion: metadata.version, groups: metadata.groups.map((g) => g.id) },
        `registered group ${entry.id} (${entry.brokers.map((b) => b.id).join(', ')}): metadata version ${metadata.version}; groups: ${metadata.groups.map((g) => g.id).join(', ')}`,
      );
    });
  });

// ------------------------------------------------------------------ consumer groups

const consumerGroup = program.command('consumer-group').description('list consumer groups; describe one: members, queues, committed offsets and lag');
consumerGroup
  .command('list')
  .description('every consumer group with committed offsets or live members, per topic: members, queues with a committed offset')
  .action(async (_options: unknown, command: Command) =>
    withClient(command, async (client) => {
      const list = await client.listConsumerGroups();
      print(command, consumerGroupListJson(list), consumerGroupListText(list));
    }),
  );
consumerGroup
  .command('describe <group>')
  .description('a consumer group on a topic: members and the queues each reads; per queue the committed, start and end offsets and the lag; the total')
  .requiredOption('--topic <name>', 'topic')
  .action(async (group: string, options: { topic: string }, command: Command) =>
    withClient(command, async (client) => {
      const described = await client.describeConsumerGroup(group, options.topic);
      print(command, consumerGroupJson(described), consumerGroupText(described));
    }),
  );

// ------------------------------------------------------------------ membership and leadership (issue 13.4)

function hostPort(name: string) {
  return (value: string): string => {
    const port = Number(value.slice(value.lastIndexOf(':') + 1));
    if (!/^[^\s:]+:\d{1,5}$/.test(value) || port < 1 || port > 65535) throw new UsageError(`${name} must be HOST:PORT, got "${value}"`);
    return value;
  };
}

const replica = program
  .command('replica')
  .description("add a broker to a group (a learner, promoted to voter once caught up) or remove one, one server at a time through the group's log");
replica
  .command('add')
  .description('add a broker started on an empty data directory (its cluster file entry says `joining: true`) to a group')
  .requiredOption('--group <id>', 'group, e.g. g1')
  .requiredOption('--id <id>', 'the new broker id, e.g. b4')
  .requiredOption('--address <host:port>', "the new broker's client address", hostPort('--address'))
  .requiredOption('--peer <host:port>', "the new broker's peer address", hostPort('--peer'))
  .option('--wait-ms <ms>', 'how long it may take to catch up; then it is removed again', positiveInt('--wait-ms'), 60_000)
  .action(async (options: { group: string; id: string; address: string; peer: string; waitMs: number }, command: Command) =>
    withClient(command, async (client) => {
      const json = !!globals(command).json;
      if (!json) process.stdout.write(`adding ${options.id} to group ${options.group} as a learner\n`);
      const progress = json ? null : watchLearner(client, options.group, options.id);
      try {
        const added = await client.addReplica(options.group, options.id, { clientAddress: options.address, peerAddress: options.peer, waitMs: options.waitMs });
        print(
          command,
          { group: added.group, id: options.id, learnerOffset: added.learnerOffset, promotedOffset: added.promotedOffset, members: membersJson(added.members) },
          `promoted ${options.id} to voter of group ${added.group} (entry at offset ${added.promotedOffset})\nmembers: ${membersText(added.members)}`,
        );
      } finally {
        progress?.stop();
      }
    }),
  );
replica
  .command('remove')
  .description('remove a voter or a learner from a group (not below three voters without --force)')
  .requiredOption('--group <id>', 'group, e.g. g1')
  .requiredOption('--id <id>', 'the broker id to remove')
  .option('--force', 'allow leaving fewer than three voters, or fewer fetching voters than a majority')
  .option('--wait-ms <ms>', 'how long to wait for the change to commit', positiveInt('--wait-ms'), 30_000)
  .action(async (options: { group: string; id: string; force?: boolean; waitMs: number }, command: Command) =>
    withClient(command, async (client) => {
      const removed = await client.removeReplica(options.group, options.id, { force: !!options.force, waitMs: options.waitMs });
      print(
        command,
        { group: removed.group, removed: options.id, offset: removed.offset, members: membersJson(removed.members) },
        `removed ${options.id} from group ${removed.group} (entry at offset ${removed.offset})\nmembers: ${membersText(removed.members)}`,
      );
    }),
  );

const leader = program.command('leader').description('leadership of a group');
leader
  .command('transfer')
  .description('hand leadership of a group to another voter and wait until it serves')
  .requiredOption('--group <id>', 'group, e.g. g1')
  .option('--to <id>', 'the voter to hand over to (default: the reachable voter holding most of the log)')
  .option('--wait-ms <ms>', 'how long to wait for the new leader to serve', positiveInt('--wait-ms'), 30_000)
  .action(async (options: { group: string; to?: string; waitMs: number }, command: Command) =>
    withClient(command, async (client) => {
      const moved = await client.transferLeader(options.group, { ...(options.to !== undefined ? { to: options.to } : {}), waitMs: options.waitMs });
      print(
        command,
        { group: moved.group, previousLeader: moved.previousLeaderId, leader: moved.leaderId, epoch: moved.epoch },
        `group ${moved.group}: leader ${moved.leaderId} (was ${moved.previousLeaderId}), epoch ${moved.epoch}`,
      );
    }),
  );

function membersJson(members: readonly ReplicaMember[]): unknown {
  return members.map((m) => ({ id: m.id, role: m.role, address: m.clientAddress }));
}

function membersText(members: readonly ReplicaMember[]): string {
  return members.map((m) => `${m.id} (${m.role})`).join(', ');
}

/** Prints the learner's catch-up while `replica add` waits: a line whenever what it holds changes. */
function watchLearner(client: MambaClient, group: string, id: string): { stop(): void } {
  let stopped = false;
  let last = '';
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const groups = await client.describeCluster().catch(() => []);
      const g = groups.find((x) => x.id === group);
      const r = g?.replicas.find((x) => x.id === id);
      const line = r ? `${id}: ${r.role}, catching up (holds ${r.endOffset} of ${g!.highWatermark})` : '';
      if (!stopped && line !== '' && line !== last) process.stdout.write(`${line}\n`);
      if (line !== '') last = line;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  };
  void loop();
  return {
    stop: () => {
      stopped = true;
    },
  };
}

// ------------------------------------------------------------------ backup and restore (issue 14)

program
  .command('backup')
  .description(
    'copy every group, each at its high watermark, into a new directory while the cluster serves (snapshot, log, manifest.json with sha256 of every file); progress on stderr',
  )
  .requiredOption('--to <dir>', 'a new or empty directory')
  .action(async (options: { to: string }, command: Command) =>
    withClient(command, async (client) => {
      const { runBackup, sizeText } = await import('./backup.js');
      const summary = await runBackup(client, resolve(options.to), (line) => process.stderr.write(`${line}\n`));
      print(
        command,
        summary,
        `backup of cluster ${summary.cluster} in ${summary.dir}: ${summary.groups.map((g) => `${g.id} at ${g.highWatermark}`).join(', ')}; ${summary.topics} topics, ${sizeText(summary.bytes)} in ${(summary.durationMs / 1000).toFixed(1)} s`,
      );
    }),
  );

program
  .command('restore')
  .description('seed the stopped, new cluster of --cluster <file> from a backup: every file is checked first, then every broker directory is written, or none')
  .requiredOption('--from <dir>', 'a backup directory (made by `mambamq backup`)')
  .option('--topics <list>', 'restore only these topics, comma separated (the others are deleted in the restored groups)')
  .action(async (options: { from: string; topics?: string }, command: Command) => {
    const file = clusterFile(command);
    const topics =
      options.topics === undefined
        ? null
        : options.topics
            .split(',')
            .map((t) => t.trim())
            .filter(Boolean);
    const { runRestore } = await import('./backup.js');
    const summary = await runRestore(resolve(options.from), loadClusterConfig(file), topics, (line) => process.stderr.write(`${line}\n`));
    print(
      command,
      summary,
      [
        `restored ${summary.from} (cluster ${summary.backupCluster}) into cluster ${summary.cluster}${summary.topics ? `, topics ${summary.topics.join(', ')}` : ''}:`,
        ...summary.groups.map(
          (g) =>
            `  group ${g.id}: ${g.brokers.join(', ')}, log ${g.startOffset}..${g.endOffset}${g.membershipRewritten ? ', membership set to the cluster file' : ''}${g.deletedTopics.length ? `, deleted ${g.deletedTopics.join(', ')}` : ''}`,
        ),
        `start it with: mambamq --cluster ${file} cluster up`,
      ].join('\n'),
    );
  });

// ------------------------------------------------------------------ produce and consume

program
  .command('produce [messages...]')
  .description('send messages (the arguments, or one per line of standard input)')
  .requiredOption('--topic <name>', 'topic')
  .option('--queue <n>', 'queue (default: by key, else round-robin)', positiveInt('--queue'))
  .option('--key <key>', 'message key (pins the messages to one queue)')
  .addOption(new Option('--ack <level>', 'acknowledgement level').choices(['none', 'leader', 'quorum']).default('quorum'))
  .action(async (messages: string[], options: { topic: string; queue?: number; key?: string; ack: Ack }, command: Command) =>
    withClient(command, async (client) => {
      const lines = messages.length ? messages : await readStdinLines();
      const results = [];
      for (const body of lines) {
        const message: OutgoingMessage = { body, ...(options.key !== undefined ? { key: options.key } : {}) };
        const r = await client.send(options.topic, [message], { ...(options.queue !== undefined ? { queue: options.queue } : {}), ack: options.ack });
        results.push({ queue: r.queue, offset: r.baseOffset });
        if (!globals(command).json) process.stdout.write(`queue ${r.queue} offset ${r.baseOffset}\n`);
      }
      if (globals(command).json) process.stdout.write(`${JSON.stringify({ topic: options.topic, sent: results })}\n`);
    }),
  );

program
  .command('consume')
  .description('read messages of one queue from an offset')
  .requiredOption('--topic <name>', 'topic')
  .option('--queue <n>', 'queue', positiveInt('--queue'), 0)
  .option('--from <offset>', 'first offset to read', positiveInt('--from'), 0)
  .option('--max <n>', 'stop after this many messages (without --follow)', positiveInt('--max'), 1000)
  .option('--follow', 'keep waiting for new messages until interrupted')
  .action(async (options: { topic: string; queue: number; from: number; max: number; follow?: boolean }, command: Command) =>
    withClient(command, async (client) => {
      let offset = options.from;
      let count = 0;
      let address: string | undefined;
      for (;;) {
        const r = await client.read(options.topic, options.queue, offset, {
          messagesMax: Math.min(500, options.follow ? 500 : options.max - count),
          waitMsMax: options.follow ? 1000 : 0,
          ...(address ? { address } : {}),
        });
        for (const m of r.messages) {
          const line = globals(command).json
            ? JSON.stringify({ queue: options.queue, offset: m.offset, timestampMs: m.timestampMs, key: m.key?.toString() ?? null, body: m.body.toString() })
            : `${m.offset}\t${m.key ? `${m.key.toString()}\t` : ''}${m.body.toString()}`;
          process.stdout.write(`${line}\n`);
        }
        count += r.messages.length;
        offset = r.nextOffset;
        address = r.advice?.address || undefined; // read where the leader advises
        if (!options.follow && (count >= options.max || r.messages.length === 0)) return;
      }
    }),
  );

program
  .command('bench')
  .description('produce messages as fast as the cluster acknowledges them, with a progress bar, then report rates and latency')
  .requiredOption('--topic <name>', 'topic (created with 4 queues when missing)')
  .option('--messages <n>', 'how many messages', positiveInt('--messages'), 100_000)
  .option('--size <bytes>', 'message body size', positiveInt('--size'), 1024)
  .option('--inflight <n>', 'messages in flight at once', positiveInt('--inflight'), 2000)
  .addOption(new Option('--ack <level>', 'acknowledgement level').choices(['none', 'leader', 'quorum']).default('quorum'))
  .action(async (options: { topic: string; messages: number; size: number; inflight: number; ack: Ack }, command: Command) => {
    const { runBench } = await import('./bench.js');
    const brokers = seedBrokers(command);
    const result = await runBench({ brokers, ...options, ...clientSecurity(command), progress: !globals(command).json });
    print(
      command,
      result,
      `${result.messages} messages of ${result.sizeBytes} bytes in ${result.seconds} s: ${result.msgsPerS} msg/s, ${result.mbPerS} MB/s, ack latency p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms`,
    );
  });

async function readStdinLines(): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of createInterface({ input: process.stdin })) if (line.length) lines.push(line);
  return lines;
}

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exit(error.exitCode === 0 ? 0 : 2);
    }
    const message = error instanceof ConfigError || error instanceof MambaError ? error.message : ((error as Error)?.message ?? String(error));
    process.stderr.write(`mambamq: ${message.split('\n')[0]}\n`);
    process.exit(1);
  }
}

void main();
