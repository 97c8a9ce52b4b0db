import { z } from 'zod';

/**
 * How to sign in to this server, served without a token at `GET /api/auth-config`: the web UI's sign-in page and
 * `terrarium login` read it.
 */
export const AuthConfigView = z.object({
  /** `static`: the server's ACCESS_TOKEN; `oidc`: an OpenID Connect provider (USE_AUTH0=true). */
  mode: z.enum(['static', 'oidc']),
  /** VIVARIA_IS_READ_ONLY: nobody needs to sign in, and nothing can be changed. */
  readOnly: z.boolean(),
  /** Present when mode is `oidc`. */
  oidc: z
    .object({
      /** ISSUER; discovery is at `<issuer>.well-known/openid-configuration`. */
      issuer: z.string(),
      /** ID_TOKEN_AUDIENCE: the web UI's OAuth client id. */
      clientId: z.string(),
      /** ACCESS_TOKEN_AUDIENCE: the `audience` to ask the provider for (Auth0 issues JWT access tokens for it). */
      audience: z.string(),
      /** Scopes the UI asks for. */
      scope: z.string(),
    })
    .optional(),
});
export type AuthConfigView = z.infer<typeof AuthConfigView>;
