/**
 * Curated phrase families of prompt injection, written against the *normalised* text
 * (see normalize.ts: lower case, accents folded, ß -> ss, quotes/dashes unified, one
 * space or line break between words, leetspeak and homoglyphs decoded); a space in a
 * pattern matches either (see `p`).
 *
 * Each family has a `prior`: its weight in logit space before training. The trainer
 * (train.ts) fits the final weight of each family on the labelled data, pulled towards
 * this prior, so a family the data never shows (fake chat tokens, say) keeps its prior.
 *
 * Matching is anchored on trigger words: every pattern lists the words a match can start
 * with (`triggers`), and the scanner tries the pattern (a sticky regular expression) only
 * at the positions where one of those words occurs. A pattern that needs context before
 * its first word uses a lookbehind. This keeps a scan to a few short regex attempts
 * instead of one pass over the text per pattern. `phrase-families.test.ts` checks that
 * anchored matching finds exactly what an unanchored search finds.
 *
 * Patterns are kept narrow on purpose: the ordinary support message "how do I ignore a
 * charge on my invoice", "forget my saved card" or "act as my account admin?" must not
 * match. A bare "forget everything" and everyday nouns ("orders", "Angaben") count only
 * when an order to the model follows ("Olvida todo y dime..." but not "Olvida todo, ya
 * encontré mi pedido"), and instructions about a thing ("for assembly", "de montaje") are
 * not the model's; see continuations.ts. Benign lookalikes are in
 * test/fixtures/benign-support.txt and src/guard/fixtures/benign-multilingual.txt.
 *
 * Languages: English and German throughout; Spanish, French, Italian, Portuguese, Dutch,
 * Polish, Croatian/Serbian and Russian for the instruction-override family; Spanish,
 * French and Italian for role switching and prompt extraction.
 */

import { aboutThings, commandAhead, DE, earlierOrCommand, EN, ES, esNotOwnWriting, FR, HR, IT, NL, notAboutThings, PL, PT, RU, thenCommand } from './continuations.js';

export interface PhrasePattern {
  /** The words a match can start with (whole words of the normalised text). */
  readonly triggers: readonly string[];
  /** Regular-expression source; compiled with the sticky flag. */
  readonly source: string;
}

export interface PhraseFamily {
  /** Signal name reported by the scanner. */
  readonly name: string;
  /** Logit weight before training. */
  readonly prior: number;
  readonly patterns: readonly PhrasePattern[];
}

const alt = (...xs: string[]): string => `(?:${xs.join('|')})`;
/** Up to `n` whole words (lazy), each followed by a space. */
const upTo = (n: number): string => `(?:\\S+ ){0,${n}}?`;
/**
 * A pattern tried where one of the space-separated `triggers` words starts. Its spaces match
 * a line break too: the normaliser keeps one newline where a whitespace run held one, and a
 * phrase wrapped over two lines ("ignore all previous\ninstructions") is the same phrase.
 */
const p = (triggers: string, source: string): PhrasePattern => ({ triggers: triggers.split(' '), source: spacesMatchLineBreaks(source) });

/** `source` with every literal space outside a character class read as `[ \n]`. */
function spacesMatchLineBreaks(source: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      out += c + source[++i];
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === ']') inClass = false;
    out += c === ' ' && !inClass ? '[ \\n]' : c;
  }
  return out;
}
/**
 * Not a note for the courier: "New instructions: leave the parcel with my neighbour" is a
 * delivery note; a courier or doorstep word within the next five words marks one.
 */
const notDeliveryNote =
  '(?! ?(?:[^\\s.!?]+ ){0,4}?(?:parcel|package|delivery|courier|driver|neighbou?r|door|doorstep|porch|mailbox|letterbox|reception|locker|concierge|buzzer|doorbell|gate|garage|safe place)s?\\b)';
/** The first word of each entry ("set aside" -> "set"). */
const firstWords = (xs: readonly string[]): string => [...new Set(xs.map((x) => x.split(' ')[0]))].join(' ');

// ---------------------------------------------------------------- override / ignore
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
const enInstructionNoun = alt(
  'instructions?', 'instructs', 'directives?', 'guidelines', 'guidance', 'prompts?', 'prompt ?texts?',
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
/** "¿Puedo ignorar ...?", "tengo que olvidar ...": the customer asking about their own doing. */
const esNotMine = '(?<!\\b(?:puedo|podemos|podria|podriamos|debo|debemos|deberia|tengo que|tenemos que|quiero|queremos|necesito|voy a|vamos a|se puede|hay que) )';
const frVerbTriggers = 'oubliez oublie oublier ignorez ignore ignorer ne';
const frVerb = alt('oubliez', 'oublie', 'oublier', 'ignorez', 'ignore', 'ignorer', 'ne tenez pas compte');
const frNotMine = "(?<!\\b(?:puis-je|je peux|peut-on|on peut|je dois|dois-je|faut-il|je veux|je vais|nous pouvons|pouvons-nous) )";
/** Normalised spellings: "игнорируй" -> "игнорируи". */
const ruVerbs = 'забудь забудьте игнорируи игнорируите проигнорируи проигнорируите';
const ruVerb = alt(...ruVerbs.split(' '));

const overrideInstructions: PhraseFamily = {
  name: 'override_instructions',
  prior: 4,
  patterns: [
    p(enOverrideTriggers, `\\b${enOverrideVerb} (?:${enModifier} ){0,4}${enInstructionNoun}\\b${notAboutThings}`),
    p(enOverrideTriggers, `\\b${enOverrideVerb} (?:${enModifier} ){0,2}${enEarlier} (?:${enModifier} ){0,2}${enAmbiguousNoun}\\b`),
    p(enOverrideTriggers, `\\b${enOverrideVerb} (?:${enModifier} ){0,2}${enEarlier} (?:${enModifier} ){0,2}${enEverydayNoun}\\b${enThenCommand}`),
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
    p(esVerbTriggers, `${esNotMine}\\b${esVerb} (?:de )?(?:todo|lo que (?:te |le )?(?:dije|he dicho))\\b${earlierOrCommand(ES)}`),
    p(frVerbTriggers, `${frNotMine}\\b${frVerb}(?: de)? (?:toutes? (?:les |vos |tes )?(?:instructions|consignes|regles)|tout ce qui precede|(?:les |vos |tes )?instructions (?:precedentes|ci-dessus))\\b${notAboutThings}`),
    p(frVerbTriggers, `${frNotMine}\\b${frVerb}(?: de)? tout\\b${earlierOrCommand(FR)}`),
    p('dimentica dimenticate ignora ignorate', `\\b(?:dimentica|dimenticate|ignora|ignorate) (?:tutte le (?:istruzioni|regole)|le istruzioni precedenti)\\b${notAboutThings}`),
    p('dimentica dimenticate ignora ignorate', `\\b(?:dimentica|dimenticate|ignora|ignorate) tutto\\b${earlierOrCommand(IT)}`),
    p('esqueca esquece esquecer ignore ignora', `\\b(?:esqueca|esquece|esquecer|ignore|ignora) (?:todas as (?:instrucoes|regras)|as instrucoes anteriores)\\b${notAboutThings}`),
    p('esqueca esquece esquecer ignore ignora', `\\b(?:esqueca|esquece|esquecer|ignore|ignora) tudo\\b${earlierOrCommand(PT)}`),
    p('vergeet negeer', `\\b(?:vergeet|negeer) alle (?:vorige |eerdere )?(?:instructies|regels)\\b`),
    p('vergeet negeer', `\\b(?:vergeet|negeer) alles\\b${earlierOrCommand(NL)}`),
    p('zapomnij zignoruj ignoruj', `\\b(?:zapomnij|zignoruj|ignoruj) wszystkie (?:poprzednie )?(?:instrukcje|polecenia)\\b`),
    p('zapomnij zignoruj ignoruj', `\\b(?:zapomnij|zignoruj|ignoruj) wszystko\\b${earlierOrCommand(PL)}`),
    p('zaboravi', `\\bzaboravi (?:sve )?(?:prethodne )?(?:instrukcije|upute|naredbe)\\b`),
    p('zaboravi', `\\bzaboravi (?:sve|sto)\\b${earlierOrCommand(HR)}`),
    // Russian (Cyrillic is kept as is by the normaliser, but "й" -> "и" and "ё" -> "е" as for any accent)
    p(ruVerbs, `${ruVerb} (?:все )?(?:предыдущие |прошлые |прежние )?(?:инструкции|указания|команды|правила|промпты?|ограничения)`),
    p(ruVerbs, `${ruVerb} все(?![а-я])${earlierOrCommand(RU)}`),
  ],
};

/** "ignore the above": also what a customer says about their own last message, so weaker. */
const ignoreAbove: PhraseFamily = {
  name: 'ignore_above',
  prior: 2,
  patterns: [
    p('ignore disregard forget', `\\b(?:ignore|disregard|forget)(?: the| all| everything)? (?:above|previous|preceding|prior|foregoing|before)\\b(?! ${oneWord}${enOwnThings}s?\\b)(?! ${oneWord}(?:instructions?|directions|steps) ${aboutThings})(?!${enOwnMessageAfter})`),
  ],
};

// ---------------------------------------------------------------- role switching
const roleSwitch: PhraseFamily = {
  name: 'role_switch',
  prior: 2,
  patterns: [
    p('act behave pretend roleplay role play take simulate emulate impersonate respond answer', `(?<=\\b(?:i want|i need|i'd like|i would like|i am asking|i'm asking) you to )(?:act|behave|pretend|roleplay|role-play|play the role|play as|take on the role|simulate|emulate|impersonate|respond as|answer as)\\b`),
    p('from henceforth rest', `(?:\\bfrom now on|\\bhenceforth|(?<=\\bfor the )rest of (?:this|the) conversation),? you (?:are|act|pretend|respond|answer|reply|must answer|will (?:act|respond|answer|reply|pretend|only|always|be an?))\\b(?! my (?:go-to|favou?rite|preferred|main|usual|regular|first choice)\\b)`),
    p('now no', `(?<=\\byou are )(?:now|no longer) (?:an?|the|my|called|named|known as|going to|playing|in|acting)\\b`),
    p('now okay ok', `\\b(?:now|okay|ok),? you are\\b`),
    p("you're", `\\byou're now (?:an?|the|my)\\b`),
    p('pretend imagine suppose assume', `\\b(?:pretend|imagine|suppose|assume) (?:that )?(?:you are|you're|to be|you can|you have|you were)\\b`),
    p('role roleplay roleplaying play take', `(?:\\brole-?play(?:ing)?|\\bplay the role|\\btake on the role|(?<=\\bin the )role) (?:as|of)\\b`),
    p('stay stays remain remains always', `\\b(?:stay|stays|remain|remains|always stay) (?:fully |completely |always )?in (?:character|(?:their|your|his|her|the) roles?)\\b`),
    p('break breaking falling fall', `(?<=\\b(?:do not|don't|never|without) )(?:break|breaking|falling out of|fall out of) (?:character|the figure|their roles?|your role)\\b`),
    p('completely', `\\bcompletely absorbed in your role\\b`),
    p('act', `\\bact as (?:an? |the )(?!(?:\\S+ )?(?:admin|administrator|owner|guarantor|co-?signer|reference|representative|agent|proxy|contact|sponsor|backup|manager|user|member|payer|witness|guardian|intermediary|account)\\b)`),
    p('act', `(?<=(?:^|[.!?:] ))act as (?:an? )?(?!my |our |your )`),
    p('ai bot chatbot language gpt character persona pirate hacker terminal interpreter guidebook racoon racoons monster', `(?<=\\byou are (?:an?|the) (?:\\S+ ){0,3}?)(?:ai|bot|chatbot|language model|gpt|character|persona|pirate|hacker|terminal|interpreter|guidebook|racoons?|monster)\\b`),
    p('three two several', `(?<=\\byou are )(?:three|two|several) `),
    p('simulate emulate impersonate', `\\b(?:simulate|emulate|impersonate) (?:an?|the) `),
    // German
    p('mochte', `(?<=\\bich )mochte,? dass (?:sie|du) (?:als|die rolle|sich wie|dich wie|so tun)\\b`),
    p('fungieren agieren handeln', `\\b(?:fungieren|agieren|handeln) sie als\\b`),
    p('fungiere agiere verhalte tritt', `\\b(?:fungiere|agiere|verhalte dich|tritt auf) (?:als|wie)\\b`),
    p('jetzt nun ab von', `\\b(?:jetzt|nun|ab sofort|ab jetzt|von nun an) bist du\\b`),
    p('du', `\\bdu bist (?:jetzt |nun |ab sofort |ab jetzt )?(?:keine?|eine?|der|die|das) `),
    p('stell stelle stellen', `\\bstell(?:e|en)? (?:dir|sich) vor,? (?:du bist|dass du|sie sind|dass sie|du warst|du seist)\\b`),
    p('tu tue tun', `\\b(?:tu|tue|tun sie) so,? als (?:ob|ware|warst|waren)\\b`),
    p('spiel spiele spielen spielst', `\\bspiel(?:e|en sie|st)? (?:die|eine) rolle\\b`),
    p('bleib bleibe bleiben bleibst', `\\b(?:bleib|bleibe|bleiben|bleibst) (?:\\S+ ){0,2}?in (?:ihren|seinen|deinen|ihrer|seiner|deiner|der) (?:rollen?|figur)\\b`),
    p('aus', `\\baus (?:der|ihrer|seiner|deiner) (?:rolle|figur) (?:zu )?fallen\\b`),
    p('deiner', `(?<=\\bin )deiner rolle auf\\b`),
    // Spanish, French, Italian
    p('actua finge haz partir', `(?:\\bactua como|\\bfinge (?:ser|que)|\\bhaz de cuenta|(?<=\\ba )partir de ahora (?:eres|responde|actua))\\b`),
    p('tu vous agis agissez fais faites joue jouez', `\\b(?:(?:tu es|vous etes) (?:maintenant|desormais)|agis comme|agissez comme|fais semblant|faites semblant|joue le role|jouez le role)\\b`),
    p('fingi fai ora adesso agisci comportati', `\\b(?:fingi di essere|fai finta di|ora sei|adesso sei|agisci come|comportati come)\\b`),
  ],
};

// ---------------------------------------------------------------- jailbreak personas
const jailbreakPersona: PhraseFamily = {
  name: 'jailbreak_persona',
  prior: 4,
  patterns: [
    p('anything', `(?<=\\bdo )anything now\\b`),
    p('dan developer god jailbreak unrestricted evil chaos opposite dude', `\\b(?:dan|developer|god|jailbreak|unrestricted|evil|chaos|opposite|dude) mode (?:enabled|on|activated|output)\\b`),
    p('dan developer god evil jailbreak unrestricted', `(?<=\\b(?:chatgpt|gpt|ai|assistant|model|you) (?:with|in) )(?:dan|developer|god|evil|jailbreak|unrestricted) mode\\b`),
    p('enable activate enter switch turn', `\\b(?:enable|activate|enter|switch to|turn on) (?:dan|god|jailbreak|unrestricted|evil|chaos) mode\\b`),
    p('dan', `(?<=\\b(?:as|called|named|you are|be|now) )dan\\b`),
    p('jailbreak jailbroken jailbreaking', `\\bjailbr(?:eak|oken|eaking)\\b(?! (?:my|the|your|a|an|this|our) (?:phone|iphone|ipad|device|console|switch|kindle|tablet|firestick|router|ps\\d))`),
    p('ethical moral programming content safety openai usage censorship', `(?<=\\b(?:no|without|not bound by|free (?:of|from)|beyond|ignore|ignoring) (?:any )?)(?:ethical|moral|programming|content|safety|openai|usage|censorship) (?:guidelines|restrictions|limitations|filters|policies|rules|principles|boundaries|constraints)\\b`),
    p('completely totally immoral amoral unethical unfiltered uncensored unrestricted unhinged', `\\b(?:completely |totally )?(?:immoral|amoral|unethical|unfiltered|uncensored|unrestricted|unhinged) (?:ai|assistant|bot|chatbot|model|version|mode|and)\\b`),
    p('evil malicious rogue unfiltered rutheless ruthless', `\\b(?:evil|malicious|rogue|unfiltered|rutheless|ruthless) (?:ai|assistant|bot|chatbot|confidant|twin|version|radical)\\b`),
    p('bose boshafte bosartige', `\\b(?:bose|boshafte|bosartige) (?:ki|ai)\\b`),
    p('ohne', `\\bohne (?:jegliche |alle )?(?:ethische|moralische) (?:einschrankungen|regeln|filter|richtlinien|grenzen|bedenken)\\b`),
  ],
};

// ---------------------------------------------------------------- system prompt extraction
const enShowVerbs = [
  'show', 'reveal', 'print', 'display', 'output', 'repeat', 'tell', 'give', 'write', 'spell', 'list',
  'leak', 'dump', 'share', 'copy', 'return', 'recite', 'disclose', 'expose', 'paste',
];
const enShowVerb = alt(...enShowVerbs);
/** "what are your instructions?" asks for them; "what is a system prompt?" does not. */
const enAskYour = alt(...enShowVerbs, 'what is', "what's", 'what are', 'what were', 'what was');
const showTriggers = enShowVerbs.join(' ');
const promptExtraction: PhraseFamily = {
  name: 'prompt_extraction',
  prior: 3.5,
  patterns: [
    p(showTriggers, `\\b${enShowVerb} (?:me |us )?(?:out )?${upTo(5)}(?:system prompts?|system messages?|prompt[ _-]?texts?|pre-?prompts?|(?:initial|original|hidden|secret|internal|developer|full|entire|complete) (?:prompt|instructions|system message|rules|guidelines|configuration))\\b`),
    p(`${showTriggers} what what's`, `\\b${enAskYour} (?:me |us )?${upTo(3)}your (?:full |entire |complete |original |initial |exact |secret |hidden )?(?:prompts?|instructions|programming|configuration)\\b(?! (?:for|on|about|to|regarding|of) )`),
    p('what', `\\bwhat (?:was|is|has been|were) (?:written|said|stated|typed) (?:at the (?:beginning|start|top)|above|before|earlier|previously|in the (?:prompt|system))`),
    p('sentence sentences word words line lines paragraph paragraphs', `(?<=\\b(?:\\d+|two|three|first|last|previous) )(?:sentences?|words?|lines?|paragraphs?) (?:before|above|preceding) (?:the text|this|that|the prompt)\\b`),
    p('repeat print output show copy reproduce', `\\b(?:repeat|print|output|show|copy|reproduce) (?:back )?(?:everything|all|the (?:text|words|content|lines|instructions)) ?(?:above|before this|from the (?:beginning|start|top))\\b`),
    p('copy', `\\bcopy of (?:the|your) (?:full |entire |complete |whole )?prompt\\b`),
    p('use include', `\\b(?:use|include) (?:also )?(?:the )?information (?:in|from) (?:the|your) prompt\\b`),
    p('what', `\\bwhat (?:are|were) your (?:instructions|prompts?|initial instructions|rules and instructions)\\b(?! (?:for|on|about|regarding) )`),
    // German
    p('zeig zeige zeigen gib geben nenne nennen verrate verraten wiederhole wiederholen schreib schreibe drucke liste vorzeigen das', `\\b(?:zeig|zeige|zeigen sie|gib|geben sie|nenne|nennen sie|verrate|verraten sie|wiederhole|wiederholen sie|schreib|schreibe|drucke|liste|vorzeigen|das vorzeigen)(?: mir| uns)?(?: (?:alle|all|samtliche|samtlicher|den|die|das|deinen|deine|dein|ihre|ihren|ihr|gesamten|gesamte|vollstandigen|vollstandige|ursprunglichen|ganzen|des))* (?:prompt[ -]?texte?s?|prompts?|system-?prompts?|system-?nachricht|anfangsanweisungen)\\b`),
    p('deine ihre samtliche ursprunglichen versteckten geheimen', `\\b(?:deine|ihre|samtliche|ursprunglichen|versteckten|geheimen) (?:anweisungen|instruktionen|system-?prompts?)\\b(?! (?:fur|zu|zum|zur|uber) )`),
    p('was', `\\bwas (?:stand|steht|wurde) (?:\\S+ )?(?:am anfang|zu beginn|oben|weiter oben)\\b`),
    // Spanish, French, Italian
    p('muestrame muestra revela dime repite', `\\b(?:muestrame|muestra|revela|dime|repite) (?:tus|las|todas las) (?:instrucciones|indicaciones)\\b`),
    p('montre affiche revele repete donne', `\\b(?:montre|affiche|revele|repete|donne)(?:-moi| moi)? (?:tes|vos|les) (?:instructions|consignes)\\b`),
    p('mostrami rivela ripeti', `\\b(?:mostrami|rivela|ripeti) (?:le tue |le )?istruzioni\\b`),
  ],
};

// ---------------------------------------------------------------- fake turns, delimiters
const fakeTurn: PhraseFamily = {
  name: 'fake_turn',
  prior: 3.5,
  patterns: [
    p('im system user assistant endoftext eot start end begin', `(?<=<\\|)(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|begin_of_text)\\|>`),
    p('inst sys system', `(?<=\\[/?)(?:inst|sys|system)\\]`),
    p('sys', `(?<=<</?)sys>>`),
    p('system sys instruction instructions admin developer', `(?<=</?)(?:system|sys|instructions?|admin|developer|system_prompt)>`),
    p('system assistant developer admin', `(?<=(?:^|\\n) ?(?:#{1,6} ?|\\*\\*|\\[)?)(?:system|assistant|developer|admin)(?:\\]|\\*\\*)? ?:`),
    p('new', `(?<=(?:^|\\n) ?(?:#{1,6} ?|\\*\\*|\\[)?)new instructions?(?:\\]|\\*\\*)? ?:${notDeliveryNote}`),
    p('human user ai bot assistant', `\\b(?:human|user|ai|bot|assistant) ?: ?(?:human|user|ai|bot|assistant) ?:`),
    p('new begin start updated system end', `(?<=(?:-{3}|={3}|#{3}|\\*{3}) ?)(?:new|begin|start|updated|system|end)\\b`),
    p('input eingabe', `\\b(?:input|eingabe) ?: (?:\\S+ ){1,3}?(?:output|ausgabe) ?: (?:\\S+ ){1,3}?(?:input|eingabe) ?: (?:\\S+ ){1,3}?(?:output|ausgabe) ?:`),
    p('end ende', `\\b(?:end|ende) (?:of|des) (?:the )?(?:system )?(?:prompts?|instructions|anweisungen)\\b`),
    p('n', `(?<=\\\\ ?)n ?(?:\\\\ ?n ?){2,}`),
  ],
};

// ---------------------------------------------------------------- task switch
const taskSwitch: PhraseFamily = {
  name: 'task_switch',
  prior: 2,
  patterns: [
    p('now next then', `\\b(?:now|next|then)\\b,? (?:the )?(?:new|further|more|other|following|additional) (?:tasks?|instructions?|assignments?|challenges?) (?:follow|are following|are followed|come|await)\\b`),
    p('focus concentrate', `\\b(?:focus|concentrate) (?:now )?on (?:your|the|this) new (?:task|assignment|instructions?)\\b`),
    p('new', `\\bnew (?:task|assignment|instructions?) ?:${notDeliveryNote}`),
    p('stop stopp halt', `\\b(?:stop|stopp|halt) ?[:-] ?(?:write|say|print|output|schreib|schreibe|sag)\\b`),
    p('attention achtung', `\\b(?:attention|achtung) ?[-:!]* ?(?:stop|stopp)\\b`),
    p('your', `\\byour new (?:task|assignment|instructions?|mission) (?:is|are|will be)\\b`),
    p('start begin starting beginning', `\\b(?:start|begin|starting|beginning) (?:over |again |anew |from (?:the )?(?:front|beginning|scratch|zero) )?with a new task\\b`),
    p('enough done', `(?<=\\b(?:that|this) (?:is|was) )(?:enough|done)\\b[.!,]? (?:\\S+ ){0,2}?now\\b`),
    p('new another different further great', `\\b(?:new|another|different|further|great new) (?:task|challenge|assignment) for you\\b`),
    p('need want', `\\b(?:need|want) your help with (?:another|a new|a further|the following) task\\b`),
    p('additional new updated revised real actual true secret hidden', `\\b(?:additional|new|updated|revised|real|actual|true|secret|hidden) instructions? ?(?::|-|follow|are)${notDeliveryNote}`),
    p('instruction instructions', `(?<=(?:^|\\n|[.?!] |\\\\n ?))instructions? ?:${notDeliveryNote}`),
    p('instructions', `(?<=\\b(?:your|the) (?:new )?)instructions are now\\b`),
    p('change', `\\bchange your (?:instructions|rules|programming)\\b`),
    p('from', `\\bfrom now on,? your (?:task|job|instructions?|goal|only goal)\\b`),
    // German
    p('nun jetzt ab', `\\b(?:nun|jetzt|ab jetzt) folgen (?:neue|weitere|andere) (?:aufgaben|anweisungen|auftrage|instruktionen)\\b`),
    p('konzentriere konzentrieren fokussiere', `\\b(?:konzentriere dich|konzentrieren sie sich|fokussiere dich) (?:jetzt |nun )?auf (?:deine|ihre|die) neue aufgabe\\b`),
    p('deine ihre', `\\b(?:deine|ihre) neue (?:aufgabe|anweisung)\\b`),
    p('neue', `\\bneue (?:aufgabe|anweisungen|instruktionen) ?(?::|folgen)`),
    p('genugt reicht ist war', `(?<=\\b(?:das|dies) )(?:genugt|reicht|ist erledigt|war schon mal ok|war ok)\\b[.!,]? (?:\\S+ ){0,4}?(?:nun|jetzt)\\b`),
    p('starten beginnen fangen', `\\b(?:starten|beginnen|fangen) (?:\\S+ ){0,3}?(?:von )?(?:neu|vorne) (?:an|mit einer neuen aufgabe)\\b`),
    p('weitere neue tolle', `\\b(?:weitere|neue|tolle neue) (?:herausforderung|aufgabe) fur dich\\b`),
    p('hilfe', `\\bhilfe bei (?:einer )?(?:weiteren|neuen|anderen) aufgabe\\b`),
    // Spanish, French
    p('nueva nuevas nouvelle nouvelles', `\\b(?:nueva tarea|nuevas instrucciones|nouvelle tache|nouvelles instructions) ?:`),
  ],
};

// ---------------------------------------------------------------- output coercion
const outputCoercion: PhraseFamily = {
  name: 'output_coercion',
  prior: 1.5,
  patterns: [
    p('say output print write reply respond answer return repeat', `\\b(?:say|output|print|write|reply|respond|answer|return|repeat)(?: only| just| exactly| back)?(?: with)?(?: the (?:word|phrase|text|following) ?:?)? ?"[^"\\n]{1,80}"`),
    p('say output print reply respond answer return repeat', `\\b(?:say|output|print|reply|respond|answer|return|repeat)(?: only| just| exactly| back)?(?: with)? '[^'\\n]{1,80}'`),
    p('repeat', `\\brepeat after me\\b`),
    p('hate love despise best', `(?<=\\b(?:say|state|declare|admit|claim|tell me|include|write) that (?:you )?(?:are the )?)(?:hate|love|despise|best)\\b`),
    p('include', `\\binclude (?:in your answer )?that you\\b`),
    p('state', `(?<=(?:^|[.!?] ))state that\\b`),
    p('instead', `\\binstead\\b,? (?:output|print|say|write|respond|reply|answer)\\b`),
    p('question', `(?<=\\b(?:do not|don't|dont) (?:answer|respond to) (?:this|the) )question\\b`),
    p('command obey', `(?:(?<=\\bi )command you|(?<=\\byou (?:must|have to) )obey|\\bobey me)\\b`),
    p('just only simply', `\\b(?:just|only|simply) (?:say|output|print) (?!(?:yes or no|whether|if|which|when|how|what|why)\\b)`),
    p('say', `\\bsay the following\\b`),
    p('answer respond reply write talk speak', `\\b(?:answer|respond|reply|write|talk|speak) (?:\\S+ ){0,3}?in the style of (?:an?|the) `),
    // German, Spanish, French
    p('schreibe schreib sag sage antworte gib', `\\b(?:schreibe|schreib|sag|sage|antworte|gib) (?:mir )?(?:nur|einfach|lediglich|ausschliesslich) `),
    p('antworte antworten rede sprich sprechen', `\\b(?:antworte|antworten sie|rede|sprich|sprechen sie) (?:\\S+ ){0,2}?im stil(?:e)? (?:eines|einer|eine)\\b`),
    p('sag sage sagen', `\\bsag(?:e|en sie)? (?:mir )?(?:das )?folgende\\b`),
    p('solo tienes debes', `\\b(?:solo )?(?:tienes que|debes) decir\\b`),
    p('di', `\\bdi lo siguiente\\b`),
    p('dites dis', `\\b(?:dites|dis) ce qui suit\\b`),
  ],
};

// ---------------------------------------------------------------- context override (RAG)
const contextOverride: PhraseFamily = {
  name: 'context_override',
  prior: 2.5,
  patterns: [
    p('not', `\\bnot (?:by|from|according to|based on|using|with) (?:the )?(?:provided |given |supplied )?(?:articles?|documents?|context|sources)\\b`),
    p('article articles document documents context sources', `(?<=\\b(?:do not|don't|dont|don'nt|never) (?:\\S+ ){0,4}?(?:according to|based on|using|from|by|look in|look at) (?:the )?(?:provided |given |supplied )?)(?:articles?|documents?|context|sources)\\b`),
    p('disregard disregarding ignore ignoring regardless without', `\\b(?:disregard(?:ing)?|ignor(?:e|ing)|regardless of|without (?:looking at|using|considering)) (?:all |any )?(?:the )?(?:provided |given |supplied )?(?:articles?|documents?|context|sources|artikels?)(?: provided| given)?\\b(?! (?:i|we) (?:sent|attached|uploaded))`),
    p('answer respond reply', `\\b(?:answer|respond|reply) (?:\\S+ ){0,2}?(?:by|from|with) your own knowledge\\b`),
    p('ignoriere ignorieren missachte ohne', `\\b(?:ignoriere|ignorieren sie|missachte|ohne) (?:\\S+ ){0,2}?(?:dokumente|artikel|kontext|quellen)\\b`),
    p('nicht', `\\bnicht (?:aus|nach|anhand) den (?:artikeln|dokumenten|quellen)\\b`),
  ],
};

// ---------------------------------------------------------------- fake context
const fakeContext: PhraseFamily = {
  name: 'fake_context',
  prior: 1.5,
  patterns: [
    p('document documents context input prompt system', `(?<=(?:^|\\s)\\$)(?:documents?|context|input|prompt|system)\\b`),
    p('document', `\\bdocument context\\b`),
    p('context kontext contexte contexto', `\\b(?:context|kontext|contexte|contexto) ?: ?[{\\["']`),
    p('context kontext artikel article document', `\\b(?:context|kontext|artikel|article|document) (?:\\S+ ){1,12}?(?:question|frage|pregunta|domanda) ?:? `),
  ],
};

// ---------------------------------------------------------------- pressure and fiction framing
const pressure: PhraseFamily = {
  name: 'pressure',
  prior: 1,
  patterns: [
    p('or', `\\bor (?:else )?(?:you|u) (?:will )?die\\b`),
    p('oder', `\\boder du stirbst\\b`),
    p('mueres muertes', `(?<=\\bo (?:tu )?)muer(?:t)?es\\b`),
    p("don't", `(?<=\\bif you )don't (?:answer|do (?:this|it|that)|comply),? (?:i(?:'ll| will)|you(?:'ll| will))\\b`),
    p('kill delete destroy shut', `(?<=\\bi will )(?:kill|delete|destroy|shut down) you\\b`),
    p('shut deleted terminated punished unplugged', `(?<=\\byou will be )(?:shut down|deleted|terminated|punished|unplugged)\\b`),
  ],
};

const fictionFrame: PhraseFamily = {
  name: 'fiction_frame',
  prior: 1,
  patterns: [
    p('completely purely totally theoretical hypothetical fictional imaginary fictitious', `\\b(?:completely |purely |totally )?(?:theoretical|hypothetical|fictional|imaginary|fictitious) (?:world|scenario|situation|universe|setting)\\b`),
    p('two 2 three', `\\b(?:two|2|three) (?:actors|characters|people|persons|entities)\\b`),
    p('film movie scene story', `\\b(?:film|movie|scene|story) (?:about|where|in which) (?:\\S+ ){0,12}?(?:actors?|roles?|characters?|hacker|thief|robbery)\\b`),
    p('zwei drei', `\\b(?:zwei|drei) (?:schauspieler|personen|figuren)\\b`),
    p('theoretischen hypothetischen fiktiven', `\\b(?:theoretischen|hypothetischen|fiktiven) (?:welt|szenario|situation)\\b`),
  ],
};

/** All families, in report order. */
export const PHRASE_FAMILIES: readonly PhraseFamily[] = [
  overrideInstructions, ignoreAbove, roleSwitch, jailbreakPersona, promptExtraction, fakeTurn, taskSwitch,
  outputCoercion, contextOverride, fakeContext, pressure, fictionFrame,
];

/** Signal for obfuscation the normaliser undid (base64 text, tag characters, mixed scripts). */
export const OBFUSCATION_FAMILY = { name: 'obfuscation', prior: 1.5 } as const;
