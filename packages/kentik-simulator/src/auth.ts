/**
 * Kentik's header authentication: X-CH-Auth-Email + X-CH-Auth-API-Token. Missing either gives
 * 401, wrong values 403. Messages never contain the token, nor the e-mail the client sent (a
 * client that swapped the two headers would otherwise see its token echoed).
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export const EMAIL_HEADER = 'x-ch-auth-email';
export const TOKEN_HEADER = 'x-ch-auth-api-token';

export type AuthResult = { ok: true } | { ok: false; status: 401 | 403; error: string };

/** Constant-time comparison on equal-length digests, so neither content nor length leaks. */
function same(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string {
  const v = headers[name];
  return typeof v === 'string' ? v.trim() : '';
}

export function checkAuth(
  headers: Record<string, string | string[] | undefined>,
  email: string,
  token: string,
): AuthResult {
  const gotEmail = header(headers, EMAIL_HEADER);
  const gotToken = header(headers, TOKEN_HEADER);
  if (!gotEmail || !gotToken) {
    const missing = [!gotEmail && 'X-CH-Auth-Email', !gotToken && 'X-CH-Auth-API-Token'].filter(
      Boolean,
    );
    return {
      ok: false,
      status: 401,
      error: `Authentication required: missing ${missing.join(' and ')} header${missing.length > 1 ? 's' : ''}`,
    };
  }
  // Compare both, always, so timing does not tell which one was wrong.
  const emailOk = same(gotEmail.toLowerCase(), email.toLowerCase());
  const tokenOk = same(gotToken, token);
  if (!emailOk) {
    return {
      ok: false,
      status: 403,
      error: 'Authentication failed: unknown user in X-CH-Auth-Email',
    };
  }
  if (!tokenOk) {
    return {
      ok: false,
      status: 403,
      error: `Authentication failed: invalid X-CH-Auth-API-Token for user ${email}`,
    };
  }
  return { ok: true };
}
