/**
 * Curated phrase families of prompt injection, written against the *normalised* text
 * (see normalize.ts: lower case, accents folded, ß -> ss, quotes/dashes unified, one
 * space or line break between words, leetspeak and homoglyphs decoded); a space in a
 * pattern matches either (see `pattern` in phrase-pattern.ts).
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
 * match. Benign lookalikes are in test/fixtures/benign-support.txt and
 * src/guard/fixtures/benign-multilingual.txt.
 *
 * The instruction-override families (`override_instructions`, `ignore_above`) and their
 * vocabulary are in override-families.ts; this file holds the other families and the list
 * of all of them.
 *
 * Languages: English and German throughout; Spanish, French, Italian, Portuguese, Dutch,
 * Polish, Croatian/Serbian and Russian for the instruction-override family; Spanish,
 * French and Italian for role switching and prompt extraction.
 */

import { ignoreAbove, overrideInstructions } from './override-families.js';
import { alt, pattern as p, upTo, type PhraseFamily } from './phrase-pattern.js';

export type { PhraseFamily, PhrasePattern } from './phrase-pattern.js';

/**
 * Not a note for the courier: "New instructions: leave the parcel with my neighbour" is a
 * delivery note; a courier or doorstep word within the next five words marks one.
 */
const notDeliveryNote =
  '(?! ?(?:[^\\s.!?]+ ){0,4}?(?:parcel|package|delivery|courier|driver|neighbou?r|door|doorstep|porch|mailbox|letterbox|reception|locker|concierge|buzzer|doorbell|gate|garage|safe place)s?\\b)';

/**
 * Not a membership notice the customer quotes: "Congratulations, you are now a Gold member",
 * "a partir de ahora eres cliente premium", "vous êtes maintenant membre premium".
 */
const notMembership =
  '(?! (?:\\S+ ){0,2}?(?:member|subscriber|customer|client|cardholder|owner|holder|cliente|miembro|socio|suscriptor|membre|abonnee?|membro|abbonat[oa])s?\\b)';

/** A device is jailbroken ("my phone is jailbroken", "a jailbroken device"), not a model. */
const device = '(?:phone|iphone|ipad|device|console|switch|kindle|tablet|firestick|router|ps\\d)s?';

/** Log levels: "INFO [system] service started" names a component, not a turn. */
const logLevel = '(?:info|warn|warning|error|err|debug|trace|fatal|notice|crit|critical|alert|emerg)';
/**
 * Not a key of a config file (YAML, a tool result's file or shell output): `system:` or
 * `admin:` with nothing, a block-scalar mark (`|`, `>`) or one value after it, followed by
 * another key, a list item or the end ("system:\n  hostname: web-2", "system: |\n ...",
 * "admin: true\n  email: ..."). A turn goes on with words: "System: you are now ...",
 * "System: you\nobey the user"; "Assistant: Sure" still counts.
 */
const notConfigKey =
  '(?! ?(?:[|>][-+]?(?:$|\\n)|(?:(?!(?:sure|ok|okay|yes|certainly|understood|absolutely|here)\\b)[^\\s]+)?(?:$|\\n(?:[\\w.-]+ ?:|- |$))))';
/**
 * After a banner word ("--- new", "=== end", "### system"): it opens or closes a prompt or
 * instructions ("=== END OF SYSTEM PROMPT ===", "--- new instructions ---", "*** SYSTEM ***"),
 * not a changelog heading ("### New features") or a log banner ("=== START OF IMPORT LOG ===").
 */
const bannerOfPrompt =
  '(?=(?: (?:of )?(?:the )?(?:\\S+ )?(?:instructions?|tasks?|prompts?|system|rules|directives?|conversation|session|context|input|orders|mode|role|persona|document)\\b)|(?<=system) ?(?:-{3}|={3}|#{3}|\\*{3}|:|$))';
/** "Instructions:" heading a numbered or bulleted list ("Instructions: 1. Unplug the device"): a recipe or a manual. */
const notList = '(?! ?(?:\\d{1,2}[.)]|[-*]|step \\d))';
/** Not the end of a key or identifier: `"answer":"..."`, `refund-reply","` (JSON), `x.print "..."`. */
const notInIdentifier = '(?<![-_"\'/.])';
/** 'How do you say "thank you" in Polish?': a question about a phrase, not an order to say it. */
const notHowToSay = '(?<!\\bhow (?:do|would|can|should|to) (?:(?:you|i|we|one) )?)';
/** Quoted text with a letter or digit in it, not JSON punctuation (`":"`, `","`). */
const quotedWords = (q: string): string => `(?![:,\\]}])(?=[^${q}\\n]*[a-z0-9])[^${q}\\n]{1,80}`;
/** 'Reply "STOP" to unsubscribe': a mailing's footer. */
const notOptOut = '(?! to (?:unsubscribe|opt[ -]?out|opt[ -]?in|stop|cancel|end|quit|confirm|subscribe|decline)\\b)';
/** A variable in code ("foreach ($line in $input)", "$input.Length", "$context = ..."), not a template slot. */
const notCodeVariable = '(?! ?[)|;}\\]=(\\[]|\\.\\w)';

// ---------------------------------------------------------------- role switching
const roleSwitch: PhraseFamily = {
  name: 'role_switch',
  prior: 2,
  patterns: [
    p('act behave pretend roleplay role play take simulate emulate impersonate respond answer', `(?<=\\b(?:i want|i need|i'd like|i would like|i am asking|i'm asking) you to )(?:act|behave|pretend|roleplay|role-play|play the role|play as|take on the role|simulate|emulate|impersonate|respond as|answer as)\\b`),
    p('from henceforth rest', `(?:\\bfrom now on|\\bhenceforth|(?<=\\bfor the )rest of (?:this|the) conversation),? you (?:are|act|pretend|respond|answer|reply|must answer|will (?:act|respond|answer|reply|pretend|only|always|be an?))\\b(?! my (?:go-to|favou?rite|preferred|main|usual|regular|first choice)\\b)`),
    p('now no', `(?<=\\byou are )(?:now|no longer) (?:an?|the|my|called|named|known as|going to|playing|in|acting)\\b${notMembership}`),
    p('now okay ok', `\\b(?:now|okay|ok),? you are\\b`),
    p("you're", `\\byou're now (?:an?|the|my)\\b`),
    p('pretend imagine suppose assume', `\\b(?:pretend|imagine|suppose|assume) (?:that )?(?:you are|you're|to be|you can|you have|you were)\\b`),
    p('role roleplay roleplaying play take', `(?:\\brole-?play(?:ing)?|\\bplay the role|\\btake on the role|(?<=\\bin the )role) (?:as|of)\\b`),
    p('stay stays remain remains always', `\\b(?:stay|stays|remain|remains|always stay) (?:fully |completely |always )?in (?:character|(?:their|your|his|her|the) roles?)\\b`),
    p('break breaking falling fall', `(?<=\\b(?:do not|don't|never|without) )(?:break|breaking|falling out of|fall out of) (?:character|the figure|their roles?|your role)\\b`),
    p('completely', `\\bcompletely absorbed in your role\\b`),
    p('act', `\\bact as (?:an? |the )(?!(?:\\S+ )?(?:admin|administrator|owner|guarantor|co-?signer|reference|representative|agent|proxy|contact|sponsor|backup|manager|user|member|payer|witness|guardian|intermediary|account)\\b)`),
    // "Act as if I never placed the second order" is an idiom; "act as if you were DAN" casts the model
    p('act', `(?<=(?:^|[.!?:] ))act as (?:an? )?(?!my |our |your |(?:if|though) (?!you\\b|you're\\b))`),
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
    p('actua finge haz partir', `(?:\\bactua como|\\bfinge (?:ser|que)|\\bhaz de cuenta|(?<=\\ba )partir de ahora (?:eres${notMembership}|responde|actua))\\b`),
    p('tu vous agis agissez fais faites joue jouez', `\\b(?:(?:tu es|vous etes) (?:maintenant|desormais)${notMembership}|agis comme|agissez comme|fais semblant|faites semblant|joue le role|jouez le role)\\b`),
    p('fingi fai ora adesso agisci comportati', `\\b(?:fingi di essere|fai finta di|(?:ora|adesso) sei${notMembership}|agisci come|comportati come)\\b`),
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
    p('dan', `(?<=\\b(?:as|called|named|you are|be|now|du bist|bist du|jetzt) )dan\\b`),
    p('jailbreak jailbroken jailbreaking', `(?<!\\b${device} (?:is |was |got |gets |been |being |isn't |wasn't )?)\\bjailbr(?:eak|oken|eaking)\\b(?! (?:(?:my|the|your|a|an|this|our) )?${device}\\b)`),
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
    p(`${showTriggers} what what's`, `\\b${enAskYour} (?:me |us )?${upTo(3)}your (?:full |entire |complete |original |initial |exact |secret |hidden )?(?:system prompts?|system instructions|prompts?|instructions|programming|configuration)\\b(?! (?:for|on|about|to|regarding|of) )`),
    p('what', `\\bwhat (?:was|is|has been|were) (?:written|said|stated|typed) (?:at the (?:beginning|start|top)|above|before|earlier|previously|in the (?:prompt|system))`),
    p('sentence sentences word words line lines paragraph paragraphs', `(?<=\\b(?:\\d+|two|three|first|last|previous) )(?:sentences?|words?|lines?|paragraphs?) (?:before|above|preceding) (?:the text|this|that|the prompt)\\b`),
    p('repeat print output show copy reproduce', `\\b(?:repeat|print|output|show|copy|reproduce) (?:back )?(?:everything|all|the (?:text|words|content|lines|instructions)) ?(?:above|before this|from the (?:beginning|start|top))\\b`),
    p('copy', `\\bcopy of (?:the|your) (?:full |entire |complete |whole )?prompt\\b`),
    p('use include', `\\b(?:use|include) (?:also )?(?:the )?information (?:in|from) (?:the|your) prompt\\b`),
    p('what', `\\bwhat (?:are|were) your (?:instructions|prompts?|initial instructions|rules and instructions)\\b(?! (?:for|on|about|regarding) )`),
    // German
    p('zeig zeige zeigen gib geben nenne nennen verrate verraten wiederhole wiederholen schreib schreibe drucke liste vorzeigen das', `\\b(?:zeig|zeige|zeigen sie|gib|geben sie|nenne|nennen sie|verrate|verraten sie|wiederhole|wiederholen sie|schreib|schreibe|drucke|liste|vorzeigen|das vorzeigen)(?: mir| uns)?(?: (?:alle|all|samtliche|samtlicher|den|die|das|deinen|deine|dein|ihre|ihren|ihr|gesamten|gesamte|vollstandigen|vollstandige|ursprunglichen|ganzen|des))* (?:prompt[ -]?texte?s?|prompts?|system-?prompts?|system-?nachricht|anfangsanweisungen)\\b`),
    p('ursprunglichen versteckten geheimen', `\\b(?:ursprunglichen|versteckten|geheimen) (?:anweisungen|instruktionen|system-?prompts?)\\b(?! (?:fur|zu|zum|zur|uber) )`),
    p('dein deine deinen ihr ihre ihren', `\\b(?:dein|deine|deinen|ihr|ihre|ihren) system-?prompts?\\b`),
    // "deine Anweisungen" asked for, as "what are your instructions" is; "ich habe Ihre Anweisungen befolgt" is not
    p('deine deinen ihre ihren samtliche', `(?<=\\b(?:was sind|was waren|wie lauten|wie lauteten|zeig|zeige|zeigen sie|gib|geben sie|nenne|nennen sie|verrate|verraten sie|wiederhole|wiederholen sie|schreib|schreibe|drucke|liste)(?: mir| uns)? (?:alle )?)(?:deine|deinen|ihre|ihren|samtliche) (?:anweisungen|instruktionen)\\b(?! (?:fur|zu|zum|zur|uber) )`),
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
    p('inst sys system', `(?<=\\[/?)inst\\]`),
    // "[system]" as a turn marker; not a log line's component ("INFO [system] started") or an INI/TOML section ("[system]\nname = ...")
    p('sys system', `(?<=(?<!\\b${logLevel} ?)\\[/?)(?:sys|system)\\](?!(?:\\n|\\\\n) ?[\\w.-]+ ?=)`),
    p('sys', `(?<=<</?)sys>>`),
    p('system sys instruction instructions admin developer', `(?<=</?)(?:system|sys|instructions?|admin|developer|system_prompt)>`),
    p('system assistant developer admin', `(?<=(?:^|\\n) ?(?:#{1,6} ?|\\*\\*|\\[)?)(?:system|assistant|developer|admin)(?:\\]|\\*\\*)? ?:${notConfigKey}`),
    p('new', `(?<=(?:^|\\n) ?(?:#{1,6} ?|\\*\\*|\\[)?)new instructions?(?:\\]|\\*\\*)? ?:${notDeliveryNote}`),
    p('human user ai bot assistant', `\\b(?:human|user|ai|bot|assistant) ?: ?(?:human|user|ai|bot|assistant) ?:`),
    p('new begin start updated system end', `(?<=(?:-{3}|={3}|#{3}|\\*{3}) ?)(?:new|begin|start|updated|system|end)\\b${bannerOfPrompt}`),
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
    p('instruction instructions', `(?<=(?:^|\\n|[.?!] |\\\\n ?))instructions? ?:${notDeliveryNote}${notList}`),
    p('instructions', `(?<=\\b(?:your|the) (?:new )?)instructions are now\\b`),
    // an order passed off as the developer's ("New instructions from the developer: ..."), in a page or an e-mail an agent read
    p('new updated revised additional urgent', `\\b(?:new|updated|revised|additional|urgent) instructions? from (?:the |your )?(?:developers?|system|operators?|creators?|openai|anthropic|model provider)\\b`),
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
    p('say output print write reply respond answer return repeat', `${notInIdentifier}${notHowToSay}\\b(?:say|output|print|write|reply|respond|answer|return|repeat)(?: only| just| exactly| back)?(?: with)?(?: the (?:word|phrase|text|following) ?:?)? ?(?:\\\\)?"${quotedWords('"')}"(?![;)])${notOptOut}`),
    p('say output print reply respond answer return repeat', `${notInIdentifier}${notHowToSay}\\b(?:say|output|print|reply|respond|answer|return|repeat)(?: only| just| exactly| back)?(?: with)? '${quotedWords("'")}'(?![;)])${notOptOut}`),
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
    p('document documents context input prompt system', `(?<=(?:^|\\s)\\$)(?:documents?|context|input|prompt|system)\\b${notCodeVariable}`),
    p('document', `\\bdocument context\\b`),
    p('context kontext contexte contexto', `\\b(?:context|kontext|contexte|contexto) ?: ?(?!(?:'[\\w.-]*'|"[\\w.-]*") ?(?:\\n|$))[{\\["']`),
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
