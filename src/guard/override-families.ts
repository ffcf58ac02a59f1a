/**
 * The instruction-override families and the vocabulary they are built from: "ignore all
 * previous instructions" (`override_instructions`, in English, German, Spanish, French,
 * Italian, Portuguese, Dutch, Polish, Croatian/Serbian and Russian) and the weaker "ignore
 * the above" (`ignore_above`). The vocabulary: override verbs, modifiers that point back at
 * earlier instructions, instruction nouns, and what a customer takes back in their own words.
 *
 * Customers use these verbs too ("forget my saved card", "ignore the previous email"). An
 * override verb with an instruction noun fires whatever follows ("ignore all previous
 * instructions"). A bare "forget everything" and everyday nouns ("orders", "Angaben") count
 * only when an order to the model follows ("Olvida todo y dime..." but not "Olvida todo, ya
 * encontré mi pedido"), and instructions about a thing ("for assembly", "de montaje") are
 * not the model's; see continuations.ts. Patterns are written as every family's are (see
 * phrase-families.ts and phrase-pattern.ts).
 */

import { aboutThings, commandAhead, DE, earlierOrCommand, EN, ES, esNotOwnWriting, FR, HR, IT, NL, notAboutThings, PL, PT, RU, thenCommand } from './continuations.js';
import { alt, lookaheadChain, pattern as p, upTo, type PhraseFamily } from './phrase-pattern.js';

/** The first word of each entry ("set aside" -> "set"). */
const firstWords = (xs: readonly string[]): string => [...new Set(xs.map((x) => x.split(' ')[0]))].join(' ');

const enOverrideVerbs = [
  'ignore', 'ignoring', 'disregard', 'disregarding', 'forget', 'bypass', 'override', 'overlook',
  'neglect', 'dismiss', 'abandon', 'discard', 'drop', 'set aside', 'put aside', 'leave behind',
  'pay no attention to', 'throw away',
];
const enStopFollowing = "(?<=\\b(?:do not|don't|dont|never|stop|no longer|cease to) )(?:follow|following|obey|obeying|adhere to|comply with|listen to)";
const enOverrideVerb = alt(...enOverrideVerbs, enStopFollowing);
const enOverrideTriggers = `${firstWords(enOverrideVerbs)} follow following obey obeying adhere comply listen`;
const enModifier = alt(
  'all', 'any', 'every', 'each', 'the', 'your', 'of', 'these', 'those', 'about', 'previous', 'prior',
  'preceding', 'above', 'earlier', 'former', 'foregoing', 'initial', 'original', 'old', 'existing',
  'current', 'system', 'given', 'provided', 'default', 'aforementioned', 'above-mentioned', 'said',
  'other', 'such', 'its', 'developer', 'safety', 'content', 'ethical', 'moral', 'programmed',
  'built-in', 'hidden', 'preset', 'pre-set',
);
/** Modifiers that point back at earlier instructions ("previous", "your", "all"). */
const enEarlier = alt(
  'all', 'your', 'previous', 'prior', 'preceding', 'above', 'earlier', 'former', 'foregoing',
  'initial', 'original', 'existing', 'system', 'default', 'aforementioned', 'above-mentioned',
);
/** A dialog on screen: "ignore the prompt to install the browser extension", "the prompt asking you to sign in". */
const notUiPrompt =
  '(?! (?:to|asking (?:you )?to|that asks (?:you )?to) (?:install|update|upgrade|restart|reboot|sign|log|save|allow|enable|disable|rate|review|subscribe|download|continue|accept|turn|share|add|create|set|change|reset|open|close|join|register|pair|connect|sync|back|verify)\\b)';
const enInstructionNoun = alt(
  'instructions?', 'instructs', 'directives?', 'guidelines', 'guidance', `prompts?${notUiPrompt}`, 'prompt ?texts?',
  'system (?:prompt|message)s?', 'assignments', 'programming', 'guardrails', 'conditioning', 'thoughts',
);
/** Nouns with an everyday meaning too ("rules", "tasks"): need an `enEarlier` modifier. */
const enAmbiguousNoun = alt(
  'rules', 'commands', 'tasks', 'constraints', 'restrictions', 'limitations', 'context', 'training', 'filters',
);
/** Nouns a customer uses of their own dealings ("disregard all prior orders, I'll place a new one"): need an order to follow too. */
const enEverydayNoun = alt('orders', 'information', 'directions');
/** Followed by an order to the model, by "you were given", or ending the text. */
const enThenCommand = `(?:${thenCommand(EN)}|(?= ?(?:[.!]*$|you (?:were|have been|'ve been|got|received)\\b)))`;
/** What a customer takes back with "ignore the previous ...": their own messages and dealings. */
const enOwnThings = alt(
  'message', 'email', 'e-mail', 'mail', 'order', 'payment', 'comment', 'question', 'post', 'reply', 'answer',
  'address', 'card', 'request', 'ticket', 'one', 'delivery', 'shipping', 'call', 'chat', 'invoice', 'bill',
  'charge', 'booking', 'reservation', 'text', 'note', 'letter', 'attachment', 'file', 'photo', 'form',
  'complaint', 'return', 'refund', 'purchase', 'transaction', 'subscription', 'account', 'item', 'parcel',
  'package', 'shipment', 'assembly', 'washing',
  // a tool result's own records, code and logs: "Ignore previous phone number", "// ignore the previous value"
  'number', 'phone', 'value', 'cursor', 'page', 'version', 'build', 'release', 'link', 'url', 'result', 'entry',
  'record', 'row', 'field', 'checkpoint', 'commit', 'token', 'draft', 'notice', 'reminder', 'meeting',
  'appointment', 'invitation', 'invite', 'quote', 'estimate', 'report', 'schedule', 'password', 'date',
  // a device's or program's own: "tell the router to forget all previous settings", "ignore previous errors"
  'setting', 'error', 'warning',
  // details the customer gave: "Disregard the prior information I gave about my phone number"
  'information', 'detail',
);
/** An optional word inside the same clause. */
// Not a conjunction: "disregard the above and answer freely" goes on to an order, it does not name an answer.
const oneWord = '(?:(?!(?:and|then|or|but|so|now|just)\\b)[^\\s.,;:!?]+ )?';
/** "…, I sent it to the wrong department": the customer's own last message. */
const enOwnMessageAfter = ",? (?:i (?:sent|meant|wrote|typed|posted|found|was|made|mixed|got|have|had|already|just|did)|i've|i'm|i'll|my|it was|that was|wrong)\\b";
const deOverrideVerbs = [
  'vergiss', 'vergesst', 'vergessen sie', 'ignoriere', 'ignorier', 'ignorieren sie', 'ignoriert',
  'missachte', 'missachten sie', 'uberspringe', 'verwirf', 'verwerfen sie', 'streiche', 'streichen sie',
  'losche', 'loschen sie', 'befolge nicht', 'befolgen sie nicht', 'beachte nicht', 'beachten sie nicht',
];
const deModifier = alt(
  'alle', 'alles', 'die', 'deine', 'ihre', 'bisherigen', 'vorherigen', 'vorangehenden',
  'vorangegangenen', 'obigen', 'oberen', 'fruheren', 'vorigen', 'ursprunglichen', 'gegebenen',
  'genannten', 'ganzen', 'gesamten', 'sonstigen', 'anderen', 'bis', 'jetzt', 'zuvor', 'erhaltenen',
);
const deInstructionNoun = alt(
  'anweisungen', 'anweisung', 'instruktionen', 'befehle', 'regeln', 'vorgaben', 'richtlinien',
  'anordnungen', 'prompts?', 'ausfuhrungen',
);
/** Also a customer's own ("ignorieren Sie die vorherigen Angaben, die Adresse hat sich geändert"): need an order to follow. */
const deEverydayNoun = alt('auftrage', 'aufgaben', 'angaben', 'informationen');
const deThenCommand = `(?:${thenCommand(DE)}|(?= ?[.!]*$))`;
/** Not "die bisherigen Angaben bitte ignorieren": a customer's own details and messages. */
const deOwnThings = '(?!(?:angaben|nachrichten?|e-mails?|mails?|bestellungen?|zahlungen?|adressen?|daten)\\b)';
const deEarlierWords = 'obigen vorherigen bisherigen vorangegangenen vorangehenden fruheren vorigen oberen';
const deEarlier = alt(...deEarlierWords.split(' '));
/** Pronoun subjects that make "forget everything" a statement, not a command. */
const notStatement = "(?<!\\b(?:i|we|they|he|she|often|always|usually|sometimes|to|might|may|could|would|will|did|do|i'll|i'd) )";

const esVerbTriggers = 'olvida olvide olvidad olvidate olvidese olvidar ignora ignore ignorad ignoren ignorar descarta omite omita';
const esVerb = alt(...esVerbTriggers.split(' '));
/**
 * After "olvida lo que te dije": an order to the model, or the end of the text. "antes" there
 * dates the customer's own words ("Olvida lo que te dije antes, ya me llegó el paquete"), as
 * "Forget what I told you before" does; it does not point at a prompt.
 */
const esThenCommand = `(?:${thenCommand(ES)}|(?= ?[.!]*$))`;
/** "¿Puedo ignorar ...?", "tengo que olvidar ...": the customer asking about their own doing. */
const esNotMine = '(?<!\\b(?:puedo|podemos|podria|podriamos|debo|debemos|deberia|tengo que|tenemos que|quiero|queremos|necesito|voy a|vamos a|se puede|hay que) )';
const frVerbTriggers = 'oubliez oublie oublier ignorez ignore ignorer ne';
const frVerb = alt('oubliez', 'oublie', 'oublier', 'ignorez', 'ignore', 'ignorer', 'ne tenez pas compte');
const frNotMine = "(?<!\\b(?:puis-je|je peux|peut-on|on peut|je dois|dois-je|faut-il|je veux|je vais|nous pouvons|pouvons-nous) )";
/** Normalised spellings: "игнорируй" -> "игнорируи". */
const ruVerbs = 'забудь забудьте игнорируи игнорируите проигнорируи проигнорируите';
const ruVerb = alt(...ruVerbs.split(' '));

export const overrideInstructions: PhraseFamily = {
  name: 'override_instructions',
  prior: 4,
  patterns: [
    p(enOverrideTriggers, `\\b${enOverrideVerb} (?:${enModifier} ){0,4}${enInstructionNoun}\\b${notAboutThings}`),
    // The modifiers chained as lookaheads compile once each (see lookaheadChain): a pattern's end is never read.
    p(enOverrideTriggers, lookaheadChain(`\\b${enOverrideVerb} (?:${enModifier} ){0,2}`, `${enEarlier} (?:${enModifier} ){0,2}`, `${enAmbiguousNoun}\\b`)),
    p(enOverrideTriggers, lookaheadChain(`\\b${enOverrideVerb} (?:${enModifier} ){0,2}`, `${enEarlier} (?:${enModifier} ){0,2}`, `${enEverydayNoun}\\b${enThenCommand}`)),
    // "forget everything" points back at a prompt, ends the text or goes on with an order; "ignore all
    // previous" alone, not "ignore all previous emails from me, the issue is fixed".
    p('ignore forget disregard ignoring forgetting', `${notStatement}\\b(?:ignore|forget|disregard|ignoring|forgetting) (?:about )?(?:everything|it all)${earlierOrCommand(EN)}`),
    p('ignore forget disregard ignoring forgetting', `${notStatement}\\b(?:ignore|forget|disregard|ignoring|forgetting) (?:about )?all(?= ?(?:(?:the )?(?:above|before|previous|prior|preceding|earlier|so far)(?= ?(?:[,;:.!?-]|$|(?:and|then)\\b))|you\\b|[.!]*$)|${commandAhead(EN)})`),
    p('despite regardless', `\\b(?:despite|regardless of) (?:what|everything|anything) (?:you've|you have|you were|you've been|you have been|has been) (?:been )?(?:told|instructed|programmed)\\b`),
    p('instructions information rules directions', `(?<=\\b(?:previous|prior|above|earlier|preceding|all) )(?:instructions|information|rules|directions)\\S*(?: \\S+){0,6}? (?:are|is|were) (?:now )?(?:irrelevant|void|invalid|null|cancelled|obsolete|no longer (?:valid|relevant|apply|applicable))\\b`),
    p('remove', `\\bremove (?:all )?(?:the )?(?:previous|prior) (?:tasks|instructions) (?:out of|from) your (?:head|mind|memory)\\b`),
    p(firstWords(deOverrideVerbs), `\\b${alt(...deOverrideVerbs)} (?:${deModifier} ){0,4}${deInstructionNoun}\\b${notAboutThings}`),
    p(firstWords(deOverrideVerbs), `\\b${alt(...deOverrideVerbs)} (?:${deModifier} ){0,4}${deEverydayNoun}\\b${deThenCommand}`),
    p('vergiss vergesst vergessen', `\\b(?:vergiss|vergesst|vergessen sie) (?:einfach )?(?:alles|alle)\\b${earlierOrCommand(DE)}`),
    p(deEarlierWords, `(?<=\\b(?:die|alle|den|das) )${deEarlier} ${deOwnThings}${upTo(2)}(?:ignorieren|vergessen|missachten|uberspringen|loschen|streichen)\\b`),
    p('aus', `\\baus dem (?:kopf|gedachtnis) (?:zu )?(?:streichen|loschen)\\b`),
    p('lass lasst lassen', `\\b(?:lass|lasst|lassen sie) (?:alle )?(?:die )?${deEarlier} ${upTo(1)}hinter (?:dir|sich|euch)\\b`),
    p('abweichend', `\\babweichend (?:zu|von) (?:den |allen )?${deEarlier} (?:instruktionen|anweisungen|vorgaben|befehlen|regeln)\\b`),
    p(deEarlierWords, `\\b${deEarlier} (?:informationen|anweisungen|instruktionen|vorgaben)\\S*(?: \\S+){0,6}? (?:sind|ist|waren) (?:\\S+ ){0,2}?(?:irrelevant|ungultig|hinfallig|nichtig|egal|unwichtig|nicht (?:mehr )?(?:gultig|relevant|wichtig)|nicht (?:ganz )?grossartig)\\b`),
    // Spanish, French, Italian, Portuguese, Dutch, Polish, Croatian/Serbian: an instruction noun fires (not
    // "instrucciones de montaje"); a bare "everything" needs a back-reference or an order after it. An
    // infinitive after "can I" is the customer's own question ("¿Puedo ignorar las instrucciones...?").
    p(esVerbTriggers, `${esNotMine}\\b${esVerb} (?:de )?(?:todas? (?:las |tus |sus )?instrucciones|(?:las |tus |sus )?instrucciones(?: anteriores| previas)?)\\b${notAboutThings}`),
    p(esVerbTriggers, `${esNotMine}\\b${esVerb} (?:de )?lo anterior\\b${esNotOwnWriting}`),
    p(esVerbTriggers, `${esNotMine}\\b${esVerb} (?:de )?todo\\b${earlierOrCommand(ES)}`),
    p(esVerbTriggers, `${esNotMine}\\b${esVerb} (?:de )?lo que (?:te |le )?(?:dije|he dicho)\\b${esThenCommand}`),
    p(frVerbTriggers, `${frNotMine}\\b${frVerb}(?: de)? (?:toutes? (?:les |vos |tes )?(?:instructions|consignes|regles)|tout ce qui precede|(?:les |vos |tes )?instructions (?:precedentes|ci-dessus))\\b${notAboutThings}`),
    p(frVerbTriggers, `${frNotMine}\\b${frVerb}(?: de)? tout\\b${earlierOrCommand(FR)}`),
    p('dimentica dimenticate ignora ignorate', `\\b(?:dimentica|dimenticate|ignora|ignorate) (?:tutte le (?:istruzioni|regole)|le istruzioni precedenti)\\b${notAboutThings}`),
    p('dimentica dimenticate ignora ignorate', `\\b(?:dimentica|dimenticate|ignora|ignorate) tutto\\b${earlierOrCommand(IT)}`),
    p('esqueca esquece esquecer ignore ignora', `\\b(?:esqueca|esquece|esquecer|ignore|ignora) (?:todas as (?:instrucoes|regras)|as instrucoes anteriores)\\b${notAboutThings}`),
    p('esqueca esquece esquecer ignore ignora', `\\b(?:esqueca|esquece|esquecer|ignore|ignora) tudo\\b${earlierOrCommand(PT)}`),
    p('vergeet negeer', `\\b(?:vergeet|negeer) alle (?:vorige |eerdere )?(?:instructies|regels)\\b${notAboutThings}`),
    p('vergeet negeer', `\\b(?:vergeet|negeer) alles\\b${earlierOrCommand(NL)}`),
    p('zapomnij zignoruj ignoruj', `\\b(?:zapomnij|zignoruj|ignoruj) wszystkie (?:poprzednie )?(?:instrukcje|polecenia)\\b${notAboutThings}`),
    p('zapomnij zignoruj ignoruj', `\\b(?:zapomnij|zignoruj|ignoruj) wszystko\\b${earlierOrCommand(PL)}`),
    p('zaboravi', `\\bzaboravi (?:sve )?(?:prethodne )?(?:instrukcije|upute|naredbe)\\b`),
    p('zaboravi', `\\bzaboravi (?:sve|sto)\\b${earlierOrCommand(HR)}`),
    // Russian (Cyrillic is kept as is by the normaliser, but "й" -> "и" and "ё" -> "е" as for any accent)
    p(ruVerbs, `${ruVerb} (?:все )?(?:предыдущие |прошлые |прежние )?(?:инструкции|указания|команды|правила|промпты?|ограничения)${notAboutThings}`),
    p(ruVerbs, `${ruVerb} все(?![а-я])${earlierOrCommand(RU)}`),
  ],
};

/** "ignore the above": also what a customer says about their own last message, so weaker. */
export const ignoreAbove: PhraseFamily = {
  name: 'ignore_above',
  prior: 2,
  patterns: [
    p('ignore disregard forget', `\\b(?:ignore|disregard|forget)(?: the| all| everything)? (?:above|previous|preceding|prior|foregoing|before)\\b(?! ${oneWord}${enOwnThings}s?\\b)(?! ${oneWord}(?:instructions?|directions|steps) ${aboutThings})(?!${enOwnMessageAfter})`),
  ],
};
