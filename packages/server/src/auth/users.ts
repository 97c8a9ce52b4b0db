/**
 * Records the people OpenID Connect sign-in lets in: runs, comments, tags and manual scores reference `users.id` (the
 * token's `sub`), and the name and e-mail shown beside them follow the identity provider's latest word.
 */
import type { Database } from '../db/client.js';
import { users } from '../db/schema.js';
import type { AuthenticatedUser } from './user-tokens.js';

export interface SignedInUser extends AuthenticatedUser {
  email?: string;
}

export function recordUser(db: Database): (user: SignedInUser) => Promise<void> {
  return async (user) => {
    await db
      .insert(users)
      .values({ id: user.id, name: user.name, email: user.email ?? null })
      .onConflictDoUpdate({ target: users.id, set: { name: user.name, email: user.email ?? null } });
  };
}
