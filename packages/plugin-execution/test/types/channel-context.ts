// The channel mount's `context` option keeps the context descriptor's field types (an
// `Omit<ContextDescriptor, 'host'>` kept only its index signature: every field was `unknown`).
import type { MountWebSocketChannelsOptions } from '@kb-labs/plugin-execution';

type ContextOption = NonNullable<MountWebSocketChannelsOptions['context']>;

export const fields: ContextOption = { requestId: 'r-1', tenantId: 't-1', region: 'eu' };
// @ts-expect-error requestId is a string
export const numberId: ContextOption = { requestId: 42 };
// @ts-expect-error tenantId is a string
export const computed: ContextOption = () => ({ tenantId: 7 });
// @ts-expect-error host is the channel's own field
export const withHost: ContextOption = { host: { kind: 'ws' } };
