/** `workers: auto` is one process per core the OS lets us use; a number is taken as given. */
import { availableParallelism } from 'node:os';

export function workerCount(setting: number | 'auto'): number {
  return setting === 'auto' ? Math.max(1, availableParallelism()) : setting;
}
