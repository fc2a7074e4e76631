import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { type Config, type ConfigInput, configSchema } from './schema.js';

function describe(issue: z.core.$ZodIssue): { path: string; message: string } {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.join(', ');
    return { path, message: `unknown key${issue.keys.length > 1 ? 's' : ''} ${keys}` };
  }
  return { path, message: issue.message };
}

/** Validates an already-parsed object; the first problem is thrown as a ConfigError naming its key path. */
export function resolveConfig(input: unknown): Config {
  const result = configSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map(describe);
  const first = problems[0]!;
  const err = new ConfigError(first.path, first.message);
  if (problems.length > 1) {
    err.message += `\n${problems
      .slice(1)
      .map((p) => `  ${p.path}: ${p.message}`)
      .join('\n')}`;
  }
  throw err;
}

/** The built-in default: an explicit HTTP(S) proxy on 127.0.0.1:8080 and the admin page on :9090. */
export function defaultConfig(overrides: ConfigInput = {}): Config {
  return resolveConfig(overrides);
}

export async function loadConfigFile(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ConfigError('', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (e) {
    throw new ConfigError('', `${file}: invalid YAML: ${(e as Error).message}`, { cause: e });
  }
  try {
    return resolveConfig(doc);
  } catch (e) {
    if (e instanceof ConfigError) e.message = `${file}: ${e.message}`;
    throw e;
  }
}
