/**
 * Template variables: declared types, defaults, required checks, and coercion of values that
 * arrive as strings (`x-promptgate-var-<name>` headers). Errors name the variable the way
 * the client sent it: `param: "prompt_variables.<name>"`.
 */
import { GatewayError } from '../errors.js';

export type VariableType = 'string' | 'number' | 'boolean' | 'array' | 'object';

/** A declared variable (the `variables:` entry of a template version). */
export interface VariableSpec {
  readonly type: VariableType;
  /** The variable must have a value once defaults are applied. */
  readonly required: boolean;
  readonly default?: unknown;
  readonly description?: string;
}

/** Whether `value` has the declared type (top level only; nested shapes are free). */
export function hasType(value: unknown, type: VariableType): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'array':
      return Array.isArray(value);
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
  }
}

/** `a number`, `an object`: for messages. */
export function describeType(type: VariableType): string {
  return type === 'array' || type === 'object' ? `an ${type}` : `a ${type}`;
}

/**
 * The view a template renders with: declared variables only, defaults applied, each value
 * checked against its type. Throws `missing_variable` / `invalid_variable`.
 *
 * @param specs the version's declared variables, as entries (compiled once)
 */
export function resolveVariables(
  specs: ReadonlyArray<readonly [string, VariableSpec]>,
  input: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const view: Record<string, unknown> = {};
  for (const [name, spec] of specs) {
    let value = Object.hasOwn(input, name) ? input[name] : undefined;
    if (value === undefined || value === null) value = spec.default;
    if (value === undefined || value === null) {
      if (spec.required) {
        throw new GatewayError('missing_variable', `Missing required prompt variable "${name}"`, { param: `prompt_variables.${name}` });
      }
      continue;
    }
    if (!hasType(value, spec.type)) {
      throw new GatewayError('invalid_variable', `Prompt variable "${name}" must be ${describeType(spec.type)}`, {
        param: `prompt_variables.${name}`,
      });
    }
    view[name] = value;
  }
  return view;
}

/** `42`, `-1.5`, `+3`, `.5`, `1e3`: decimal numbers, not hex, binary or octal literals. */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * Converts a string (from a header) to the declared type: `"42"` -> 42 (decimal only), `"true"` -> true,
 * JSON text for arrays and objects. Throws `invalid_variable` when it does not convert.
 */
export function coerceFromString(name: string, spec: VariableSpec, raw: string): unknown {
  const fail = (): never => {
    throw new GatewayError('invalid_variable', `Prompt variable "${name}" must be ${describeType(spec.type)}`, {
      param: `prompt_variables.${name}`,
    });
  };
  switch (spec.type) {
    case 'string':
      return raw;
    case 'number': {
      // Decimal notation only (sign, digits, point, exponent): `Number()` would also read
      // "0x10" as 16 and "0b11" as 3, so the prompt would show a number the client never wrote.
      const text = raw.trim();
      const n = DECIMAL.test(text) ? Number(text) : NaN;
      return Number.isFinite(n) ? n : fail();
    }
    case 'boolean': {
      const text = raw.trim().toLowerCase();
      if (text === 'true' || text === '1') return true;
      if (text === 'false' || text === '0') return false;
      return fail();
    }
    case 'array':
    case 'object': {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        return fail();
      }
      return hasType(parsed, spec.type) ? parsed : fail();
    }
  }
}
