import { describe, expect, it } from 'vitest';
import type { Msg } from '@nats-io/transport-node';
import { Courier } from '../src/shared/courier.js';
import { newPool, serverConnections } from './helpers.js';

const text = (value: string) => new TextEncoder().encode(value);

// What a worker's courier keeps per receiver to pace its output (an acknowledgement asked every
// 256 messages or 256 KiB): a long-lived worker serves many hosts, each backend instance on a
// subject of its own, most of them sent fewer log lines than that before they are gone.
describe('Courier: the paces it keeps per receiver, on a real nats-server', () => {
  const link = serverConnections('sender', 'receiver');

  it('lets go of receivers that wait for no acknowledgement: 3,000 short-lived hosts do not grow it past 1,024', async () => {
    const courier = new Courier(link.sender);
    const base = `paces.${newPool('many')}`;
    for (let host = 0; host < 3000; host++) courier.post(`${base}.${host}`, 'log', `execution-${host}`, text(`line of host ${host}`));
    await link.sender.flush();
    // Before: 3,000, one per host for the life of the worker.
    expect(courier.pacedReceivers).toBeLessThanOrEqual(1024);
  });

  it('still asks a receiver that stays for an acknowledgement every 256 messages, however many others came and went', async () => {
    const courier = new Courier(link.sender);
    const base = `paces.${newPool('kept')}`;
    const asked: number[] = [];
    let arrived = 0;
    link.receiver.subscribe(`${base}.steady`, {
      callback: (_error, msg: Msg) => {
        arrived++;
        if (msg.reply) {
          asked.push(arrived);
          msg.respond();
        }
      },
    });
    await link.receiver.flush();
    for (let line = 0; line < 600; line++) {
      courier.post(`${base}.steady`, 'log', 'steady', text(`line ${line}`));
      courier.post(`${base}.passing.${line}`, 'log', `passing-${line}`, text(`line ${line}`));
      courier.post(`${base}.passing-too.${line}`, 'log', `passing-too-${line}`, text(`line ${line}`));
    }
    await courier.outputWaits(`${base}.steady`);
    await link.sender.flush();
    await link.receiver.flush();
    expect(asked.slice(0, 2)).toEqual([256, 512]);
  });
});
