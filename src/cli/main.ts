#!/usr/bin/env node
// The `mambamq` command. Exit codes: 0 success, 1 failure at run time, 2 usage error.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/validate.js';
import { loadClusterConfig } from '../config/cluster.js';
import { startBroker } from '../rpc/broker-server.js';

const program = new Command();
program
  .name('mambamq')
  .description('Mamba MQ: a message broker on a Raft-replicated commit log')
  .exitOverride()
  .showHelpAfterError();

program
  .command('broker')
  .description('run one broker of a cluster file in the foreground (logs: one JSON object a line on stdout)')
  .requiredOption('--cluster <file>', 'cluster file (YAML or JSON), e.g. cluster/local-3.yaml')
  .requiredOption('--id <id>', 'this broker\'s id in the cluster file, e.g. b1')
  .action(async (options: { cluster: string; id: string }) => {
    const cluster = loadClusterConfig(options.cluster);
    const running = await startBroker(cluster, options.id);
    const stop = (signal: string): void => {
      process.stderr.write(`mambamq broker ${options.id}: ${signal}, stopping\n`);
      running.stop().then(() => process.exit(0), () => process.exit(1));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exit(error.exitCode === 0 ? 0 : 2);
    }
    const message = error instanceof ConfigError ? error.message : (error as Error).message ?? String(error);
    process.stderr.write(`mambamq: ${message}\n`);
    process.exit(1);
  }
}

void main();
