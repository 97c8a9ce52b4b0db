import {
  QueryClient,
  type UseMutationOptions,
  type UseQueryOptions,
  useMutation,
  useQuery,
} from '@tanstack/react-query';
import { ApiError, type ApiFetchInit, apiFetch } from './client.js';

/** One client for the app: no retries on 4xx answers (the server meant it), a couple on network errors. */
export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        retry: (failures, error) =>
          !(error instanceof ApiError && error.status >= 400 && error.status < 500) && failures < 2,
        refetchOnWindowFocus: false,
      },
    },
  });
}

/** `useQuery` on a GET of the server's API. */
export function useApi<T>(
  path: string,
  options: Omit<UseQueryOptions<T, ApiError>, 'queryKey' | 'queryFn'> & { queryKey?: readonly unknown[] } = {},
) {
  const { queryKey, ...rest } = options;
  return useQuery<T, ApiError>({ queryKey: queryKey ?? [path], queryFn: () => apiFetch<T>(path), ...rest });
}

/** `useMutation` on a call to the server's API; `request` maps the variables to a path and init. */
export function useApiMutation<T, V>(
  request: (variables: V) => { path: string; init?: ApiFetchInit },
  options: Omit<UseMutationOptions<T, ApiError, V>, 'mutationFn'> = {},
) {
  return useMutation<T, ApiError, V>({
    mutationFn: (variables) => {
      const { path, init } = request(variables);
      return apiFetch<T>(path, init);
    },
    ...options,
  });
}
