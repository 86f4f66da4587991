/**
 * The first CBOR tag in one well-formed data item, or undefined if it has none.
 *
 * The hub stores a writer's value bytes as they are, so decoding them is not enough to check
 * them: cbor-x resolves some tags into plain data before anyone sees them (55799 self-describe,
 * its record definitions 0xdff9–0xdfff and references, packed values), and a replica with
 * another decoder would then read something else, or fail. The protocol uses no tags, so any
 * tag anywhere in a value refuses it. This walks the item's heads without building anything:
 * a stack of item counts (Infinity for an indefinite length, closed by a break byte).
 *
 * Call it on bytes that decoded as one item: it trusts lengths it reads, and stops at the end.
 */
export function firstTag(bytes: Uint8Array): number | undefined {
  const remaining: number[] = [1];
  let pos = 0;
  while (remaining.length > 0 && pos < bytes.length) {
    const top = remaining.length - 1;
    if (remaining[top] === 0) {
      remaining.pop();
      continue;
    }
    const initial = bytes[pos]!;
    if (remaining[top] === Infinity && initial === 0xff) {
      pos += 1;
      remaining.pop();
      continue;
    }
    remaining[top]! -= 1;
    pos += 1;
    const major = initial >> 5;
    const info = initial & 0x1f;
    let argument = info;
    if (info >= 24 && info <= 27) {
      const width = 1 << (info - 24);
      argument = 0;
      for (let i = 0; i < width; i++) argument = argument * 256 + bytes[pos + i]!;
      pos += width;
    }
    const indefinite = info === 31;
    switch (major) {
      case 2: // byte string
      case 3: // text string: its chunks, if indefinite, are strings read as items
        if (indefinite) remaining.push(Infinity);
        else pos += argument;
        break;
      case 4: // array
        remaining.push(indefinite ? Infinity : argument);
        break;
      case 5: // map: a key and a value per entry
        remaining.push(indefinite ? Infinity : argument * 2);
        break;
      case 6:
        return argument;
      // 0, 1 (integers) and 7 (simple values, floats) carry nothing after their head
    }
  }
  return undefined;
}
