import type { AuthConfigView } from '@terrarium/shared';
import { useApi } from '../../api/query.js';

/** How this server signs people in (`GET /api/auth-config`, no token needed); it does not change while the page lives. */
export function useAuthConfig() {
  return useApi<AuthConfigView>('/api/auth-config', { staleTime: Number.POSITIVE_INFINITY });
}

/**
 * Whether the server is read-only (VIVARIA_IS_READ_ONLY): every action is hidden. True until the server has said,
 * so no action flashes up on a read-only instance.
 */
export function useReadOnly(): boolean {
  return useAuthConfig().data?.readOnly ?? true;
}
