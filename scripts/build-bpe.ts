/**
 * Writes the tokenizer vocabularies promptgate ships (assets/bpe/<name>.bin, format in
 * src/tokenizer/vocabulary.ts) from gpt-tokenizer's copy of OpenAI's tiktoken tables
 * (tiktoken: MIT, OpenAI; gpt-tokenizer: MIT). Run after upgrading gpt-tokenizer;
 * test/tokenizer/vocabulary.test.ts fails while the shipped files differ from it.
 *
 *   npm run build:bpe        (tsx scripts/build-bpe.ts)
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ENCODINGS, vocabularyFile } from '../src/tokenizer/index.js';
import { BpeVocabulary } from '../src/tokenizer/vocabulary.js';
import { referenceTokens } from '../test/tokenizer/reference.js';

for (const name of ENCODINGS) {
  const tokens = await referenceTokens(name);
  const file = BpeVocabulary.encode(tokens);
  writeFileSync(vocabularyFile(name), file);
  console.log(`${name}: ${tokens.length} tokens, ${(file.byteLength / 1e6).toFixed(2)} MB -> ${fileURLToPath(vocabularyFile(name))}`);
}
