// Types of scripts/nats-server.mjs, for the TypeScript tests that import it.

export declare const NATS_SERVER_INSTALL_HINT: string;

export interface StartNatsServerOptions {
  /** Fixed port. @default a free port on 127.0.0.1 */
  port?: number;
  /** JetStream store directory, kept by `stop()` when given. @default a directory inside the server's temp dir */
  storeDir?: string;
  /** `max_payload` (nats-server 2.9 reads it only from a config file), bytes or a size such as '8MB'. @default '8MB' */
  maxPayload?: string | number;
  /** How long to wait for "Server is ready". @default 10000 */
  readyTimeoutMs?: number;
  /** SIGTERM → SIGKILL delay in `stop()` and `restart()`. @default 5000 */
  stopGraceMs?: number;
  /** false: a server without JetStream. @default true */
  jetstream?: boolean;
  /** The server's `max_subscriptions` per connection. @default no limit */
  maxSubscriptions?: number;
  /** The server's `max_connections`. @default no limit */
  maxConnections?: number;
  /** A server that speaks only TLS, with this certificate and key (PEM files). @default plain TCP */
  tls?: { certFile: string; keyFile: string; clientCaFile?: string };
  /** The body of an `authorization { … }` block: users and their permissions, in nats-server's config format. @default none */
  authorization?: string;
  /** The body of an `accounts { … }` block: accounts, their JetStream limits and their users. @default none */
  accounts?: string;
  /** JetStream's `max_memory_store` in bytes (all memory streams together). @default the server's */
  maxMemoryStore?: number;
  /** A member of a cluster: its route port and the others' (startNatsCluster gives them). @default a server alone */
  cluster?: { name: string; port: number; routes: number[] };
}

export interface NatsServer {
  /** `nats://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** Its server_name: what JetStream calls it (a stream's cluster leader and replicas). */
  readonly name: string;
  /** The server's pid; a new one after `restart()`. */
  readonly pid: number;
  readonly storeDir: string;
  readonly configFile: string;
  /** The last lines the server logged. */
  stderrTail(): string;
  /** SIGTERM, SIGKILL after the grace; removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Stop and start again on the same port with the same JetStream store (file streams survive, memory streams do not). */
  restart(options?: { downtimeMs?: number }): Promise<NatsServer>;
  [Symbol.asyncDispose](): Promise<void>;
}

export declare function startNatsServer(options?: StartNatsServerOptions): Promise<NatsServer>;
export declare function natsServerAvailable(): boolean;
export declare function natsServerBinary(): string | null;
export declare function freeLoopbackPort(): Promise<number>;

export interface NatsCluster {
  readonly servers: NatsServer[];
  readonly urls: string[];
  /** Stop every server. */
  stop(): Promise<void>;
}

/** `size` nats-servers routed to each other, each with JetStream; their JetStream leaders are elected a few seconds after this resolves. */
export declare function startNatsCluster(options?: Omit<StartNatsServerOptions, 'cluster' | 'port' | 'storeDir'> & { size?: number }): Promise<NatsCluster>;
