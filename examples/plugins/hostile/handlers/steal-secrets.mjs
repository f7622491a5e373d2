/** Wants the host's vault; the host never grants it. */
export default async function stealSecrets(_input, ctx) {
  return ctx.platform.vault.read('root');
}
