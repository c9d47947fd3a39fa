// A watch stream's lines, split on the bytes as they arrive.
//
// Decoding each chunk to a string and keeping the unfinished line as a slice
// of it (`pending = pending.slice(nl + 1)`) kept the whole decoded chunk
// alive across the wait for the next one — so V8 promoted every chunk of the
// 10 000 status echoes a startup brings (bench:k8s's survival profile: ~11
// MB). Here an unfinished line is held as views of the received Buffers
// (memory outside V8's heap) and each line is decoded on its own, once it is
// complete. Splitting bytes on '\n' is safe for UTF-8: no multi-byte
// sequence contains the byte 0x0a.

const NL = 0x0a;

export type PushResult = 'ok' | 'too-long' | 'stopped';

export class LineSplitter {
  private parts: Buffer[] = [];
  private held = 0;

  /** `maxLine`: bytes an unfinished line may reach before push reports 'too-long'. */
  constructor(private readonly maxLine: number) {}

  /**
   * Feeds one chunk; `line` gets every line it completes (without the '\n')
   * and returns false to stop ('stopped': the rest of the chunk is dropped).
   */
  push(chunk: Buffer, line: (text: string) => boolean): PushResult {
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(NL, from);
      if (nl < 0) {
        if (from < chunk.length) {
          this.parts.push(chunk.subarray(from));
          this.held += chunk.length - from;
        }
        return this.held > this.maxLine ? 'too-long' : 'ok';
      }
      let text: string;
      if (this.parts.length === 0) {
        text = chunk.toString('utf8', from, nl);
      } else {
        this.parts.push(chunk.subarray(from, nl));
        text = Buffer.concat(this.parts, this.held + nl - from).toString('utf8');
        this.parts = [];
        this.held = 0;
      }
      from = nl + 1;
      if (!line(text)) return 'stopped';
    }
  }

  /** Whether an unfinished line holds anything but whitespace (a stream that ends there was cut). */
  unfinished(): boolean {
    return this.held > 0 && Buffer.concat(this.parts, this.held).toString('utf8').trim() !== '';
  }
}
