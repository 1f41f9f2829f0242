import { inspect } from 'node:util';

const REDACTED = '[REDACTED]';

/**
 * Holds a credential so that it cannot reach a log line, a JSON response or an error message by
 * accident: every way of turning it into text says "[REDACTED]". Only `reveal()` gives the value,
 * and only the Kentik client calls it.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  /** Replaces every occurrence of the secret in `text` (for upstream messages we pass on). */
  scrub(text: string): string {
    return this.#value.length === 0 ? text : text.split(this.#value).join(REDACTED);
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
