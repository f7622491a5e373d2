export { mountWebSocketChannels, type ChannelMount, type ChannelMountStats, type MountedChannel } from './mount.js';
export {
  ConnectionRegistry,
  encodePush,
  type BroadcastOptions,
  type ChannelConnection,
  type ConnectionInfo,
  type ConnectionRegistryStats,
} from './connection-registry.js';
export type {
  AuthenticateResult,
  ConnectionContextFields,
  ChannelErrorInfo,
  ChannelErrorPhase,
  MountWebSocketChannelsOptions,
  UnmountOptions,
  UpgradeInfo,
} from './options.js';
export type { CloseCause } from './session-runtime.js';
export type { UpgradeServer } from './upgrade-router.js';
export {
  parseClientFrame,
  type ClientMessageFrame,
  type ErrorFrame,
  type FrameId,
  type PushFrame,
  type ReadyFrame,
  type ReplyFrame,
  type ServerFrame,
} from './frames.js';
