import { isIPv6 } from 'node:net';

/**
 * Who a connection comes from, for limits kept per source: an IPv4 address, or an IPv6 /64.
 * One host is normally given a whole /64, so keying IPv6 by full address would let a single
 * client rotate through 2^64 addresses to escape every per-address limit. An IPv6 address that
 * carries an IPv4 one is that IPv4 address: IPv4-mapped (`::ffff:192.0.2.1`, how a dual-stack
 * listener reports IPv4 clients), SIIT (`::ffff:0:192.0.2.1`) and NAT64 (`64:ff9b::192.0.2.1`),
 * else every IPv4 client behind a translator would share one source.
 */
export function sourceOf(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  if (!isIPv6(address)) return address;
  const hextets = expandIPv6(address);
  const head = hextets.slice(0, 6).join(':');
  if (head === '0:0:0:0:0:ffff' || head === '0:0:0:0:ffff:0' || head === '64:ff9b:0:0:0:0') {
    const [high, low] = hextets.slice(6).map((h) => parseInt(h, 16)) as [number, number];
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  }
  return `${hextets.slice(0, 4).join(':')}::/64`;
}

/** The eight hextets of an IPv6 address, zero-compression and an IPv4 tail expanded. */
function expandIPv6(address: string): string[] {
  let text = address.split('%')[0]!.toLowerCase(); // a zone id names an interface, not a host
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((h) => h.replace(/^0+(?=.)/, ''));
}
