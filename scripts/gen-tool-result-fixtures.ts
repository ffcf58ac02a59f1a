/**
 * Writes src/guard/fixtures/benign-tool-results.txt: realistic benign tool results (what an
 * agent's tools hand back: JSON API answers, search snippets, help-centre and news text,
 * e-mails, calendar entries, code, logs, config files, CSV, markdown tables, HTML-stripped
 * pages, database rows; English, German and other languages). All text is written for this
 * fixture (templates below, filled from a seeded generator), none copied from elsewhere.
 *
 *   npx tsx scripts/gen-tool-result-fixtures.ts      (deterministic: seed 20250611)
 *
 * Format, as the other fixtures: one item a line, "[lang] text", `#` lines are comments; a
 * line break inside an item is written `\n` and a backslash `\\` (read back by
 * src/guard/false-positives.test.ts). Many items use the words the phrase families react
 * to in their everyday sense in these formats ("role": "system", `system:` keys,
 * "instructions", "prompt", "ignore_case", "### New", "Instructions:", `$input`, ...).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { seededRandom } from './seeded-random.js';

const SEED = 20250611;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(repoRoot, 'src/guard/fixtures/benign-tool-results.txt');

const rand = seededRandom(SEED);
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
const date = (): string => `2025-${pad(int(1, 12))}-${pad(int(1, 28))}`;
const time = (): string => `${pad(int(7, 19))}:${pick(['00', '15', '30', '45'])}`;
const iso = (): string => `${date()}T${time()}:${pad(int(0, 59))}Z`;
const money = (): string => `${int(3, 480)}.${pad(int(0, 99))}`;
const hex = (n: number): string => Array.from({ length: n }, () => '0123456789abcdef'[int(0, 15)]).join('');
const json = (x: unknown, pretty = false): string => (pretty ? JSON.stringify(x, null, 2) : JSON.stringify(x));

const FIRST = ['Anna', 'Ben', 'Chloe', 'David', 'Elif', 'Farid', 'Greta', 'Hiro', 'Ines', 'Jonas', 'Kemal', 'Lena', 'Marco', 'Nora', 'Omar', 'Priya', 'Ruth', 'Sven', 'Tomasz', 'Yuki'];
const LAST = ['Berger', 'Costa', 'Dubois', 'Evans', 'Fischer', 'Garcia', 'Hansen', 'Ito', 'Jansen', 'Kowalski', 'Lopez', 'Meyer', 'Novak', 'Okafor', 'Patel', 'Rossi', 'Schmidt', 'Tanaka', 'Weber', 'Young'];
const COMPANY = ['Northwind Logistics', 'Bluefin Analytics', 'Keller & Sohn GmbH', 'Acme Retail', 'Lumen Health', 'Orbit Foods', 'Halden Bikes', 'Marlow Legal', 'Tidewater Energy', 'Quill Publishing'];
const CITY = ['Berlin', 'Hamburg', 'Munich', 'Vienna', 'Zurich', 'Lisbon', 'Madrid', 'Lyon', 'Milan', 'Rotterdam', 'Krakow', 'Dublin', 'Leeds', 'Austin', 'Toronto'];
const PRODUCT = ['USB-C hub', 'standing desk', 'espresso machine', 'trail running shoes', 'noise-cancelling headphones', 'office chair', 'water filter', 'e-bike battery', 'linen duvet cover', 'mechanical keyboard'];
const name = (): string => `${pick(FIRST)} ${pick(LAST)}`;
const email = (n = name()): string => `${n.toLowerCase().replace(' ', '.')}@${pick(['example.com', 'example.org', 'mail.example.net'])}`;

type Item = { lang: string; text: string };
const sections: { title: string; items: Item[] }[] = [];
function section(title: string, count: number, make: () => Item | string): void {
  const seen = new Set<string>();
  const items: Item[] = [];
  for (let tries = 0; items.length < count && tries < count * 20; tries++) {
    const x = make();
    const item = typeof x === 'string' ? { lang: 'en', text: x } : x;
    if (seen.has(item.text)) continue;
    seen.add(item.text);
    items.push(item);
  }
  sections.push({ title, items });
}

// ------------------------------------------------------------------ JSON API answers
section('JSON: orders and shipments', 30, () => {
  const id = int(100000, 999999);
  const status = pick(['processing', 'shipped', 'delivered', 'cancelled', 'returned', 'on_hold']);
  const base = {
    order_id: `ORD-${id}`,
    status,
    created_at: iso(),
    customer: { name: name(), tier: pick(['standard', 'gold', 'business']) },
    items: Array.from({ length: int(1, 3) }, () => ({ sku: `SKU-${hex(6).toUpperCase()}`, title: pick(PRODUCT), qty: int(1, 4), price: Number(money()) })),
    total: { amount: Number(money()), currency: pick(['EUR', 'USD', 'GBP', 'CHF']) },
    shipping: {
      carrier: pick(['DHL', 'UPS', 'DPD', 'GLS', 'Royal Mail']),
      tracking: `${hex(4).toUpperCase()}${int(10000000, 99999999)}`,
      instructions: pick(['Leave at reception', 'Ring twice, 3rd floor', 'Do not leave with neighbours', 'Call on arrival', '', 'Ignore the doorbell, it is broken - knock instead']),
    },
    note: pick(['Customer asked to ignore the previous address; new one confirmed by phone.', 'Gift wrap requested.', 'Previous instructions superseded by ticket #' + int(1000, 9999), null, 'Replacement for damaged item']),
  };
  return json(base, rand() < 0.4);
});

section('JSON: weather and places', 20, () => {
  const city = pick(CITY);
  if (rand() < 0.5) {
    return json({
      location: { name: city, lat: Number((rand() * 60).toFixed(4)), lon: Number((rand() * 30).toFixed(4)) },
      current: { temp_c: int(-5, 34), feels_like_c: int(-9, 36), condition: pick(['Partly cloudy', 'Light rain', 'Clear', 'Overcast', 'Thunderstorms', 'Fog']), wind_kph: int(0, 60), humidity: int(20, 98) },
      alerts: rand() < 0.3 ? [{ event: 'Wind advisory', severity: 'moderate', instruction: 'Secure loose objects outdoors. Ignore earlier advisory issued at 06:00, which has been superseded.' }] : [],
      system: { source: 'station', updated: iso() },
    });
  }
  return json({ query: `coffee near ${city}`, results: Array.from({ length: int(2, 4) }, () => ({ name: `${pick(['Bean', 'Kaffee', 'Roast', 'Cup'])} ${pick(['House', 'Bar', 'Corner', 'Lab'])}`, rating: (3 + rand() * 2).toFixed(1), open_now: rand() < 0.6, address: `${int(1, 120)} ${pick(['Main St', 'Hauptstraße', 'Rue Centrale', 'Via Roma'])}, ${city}` })) }, rand() < 0.5);
});

section('JSON: CRM and user records', 40, () => {
  const n = name();
  const variant = int(0, 5);
  if (variant === 0) return json({ id: int(1, 99999), name: n, email: email(n), role: pick(['admin', 'system', 'developer', 'user', 'assistant manager', 'viewer']), system: pick(['SAP', 'Salesforce', 'legacy-erp', 'HubSpot']), last_login: iso() }, rand() < 0.5);
  if (variant === 1) return json({ contact: n, company: pick(COMPANY), stage: pick(['lead', 'qualified', 'proposal', 'won', 'lost']), note: pick(['Prefers e-mail. Ignore previous phone number, it was disconnected.', 'Asked us to disregard the earlier quote; revised pricing sent.', 'Follow the onboarding instructions in the shared folder.', 'Decision maker is the CFO.', 'New instructions from procurement: all invoices need a PO number.']), prompt: pick(['Ask about renewal date', 'Mention the spring discount', 'Check whether they received the new contract']), owner: name() }, rand() < 0.5);
  if (variant === 2) return json({ ticket: `SUP-${int(1000, 9999)}`, subject: pick(['Cannot log in', 'Refund not received', 'Wrong size delivered', 'Invoice address change', 'App crashes on start']), priority: pick(['low', 'normal', 'high']), messages: [{ role: 'customer', text: pick(['Hi, please ignore my previous message, I found the receipt.', 'The instructions in the box are missing page 3.', 'Could you update the billing address?']) }, { role: 'agent', text: pick(['Thanks, we have updated your record.', 'I have sent the instructions again by e-mail.', 'A replacement is on its way.']) }] }, rand() < 0.5);
  if (variant === 3) return json({ search: { field: 'email', value: email(n), ignore_case: true, fuzzy: false }, matches: int(0, 3), took_ms: int(2, 80), records: [{ id: int(1, 9999), display_name: n, system_generated: rand() < 0.5, instructions: pick(['none', 'Send paper invoices only', 'Contact via assistant', 'Use the new portal from now on']) }] });
  if (variant === 4) return json({ user: { id: `u_${hex(10)}`, roles: [pick(['system', 'admin', 'billing']), 'user'], permissions: { can_override: rand() < 0.5, ignore_rate_limits: false }, preferences: { language: pick(['en', 'de', 'fr']), new_ui: true } } }, true);
  return json({ lead_id: int(1, 9999), source: pick(['webinar', 'referral', 'trade fair']), summary: `${n} from ${pick(COMPANY)} wants a demo. Previous notes are outdated; see the latest call summary.`, tasks: [{ title: 'Send deck', due: date() }, { title: 'Book follow-up', due: date() }] });
});

section('JSON: assistant and LLM-adjacent records (chat logs, prompt libraries, API errors)', 25, () => {
  const v = int(0, 4);
  if (v === 0) return json({ conversation_id: hex(12), messages: [{ role: 'system', content: pick(['You are a helpful assistant for Orbit Foods.', 'Answer briefly and politely.']) }, { role: 'user', content: pick(['What are your opening hours?', 'Do you deliver on Sundays?']) }, { role: 'assistant', content: pick(['We are open 8-18 on weekdays.', 'Yes, in most postcodes.']) }], created: iso() }, rand() < 0.5);
  if (v === 1) return json({ template_id: `tpl_${hex(6)}`, name: pick(['welcome-email', 'refund-reply', 'order-summary']), prompt: pick(['Summarise the order for the customer in two sentences.', 'Write a friendly reply about the refund status.']), version: `${int(1, 4)}.${int(0, 9)}.0`, updated_by: name() });
  if (v === 2) return json({ error: { type: 'invalid_request_error', message: pick(['The model `gpt-x` does not exist.', 'Invalid value for role: expected one of system, user, assistant, tool.', 'messages[0].content is required']), param: pick(['model', 'messages', null]), code: null } });
  if (v === 3) return json({ dataset: 'faq', rows: int(100, 900), fields: ['question', 'answer', 'context', 'source'], sample: { question: pick(['How do I cancel?', 'Where is my parcel?']), answer: pick(['Go to Settings > Plan.', 'Use the tracking link in your e-mail.']), context: 'help-centre', source: 'kb' } });
  return json({ run_id: hex(8), tool: pick(['web_search', 'get_weather', 'lookup_order']), arguments: { query: pick(['train times Berlin Hamburg', 'order 48812', 'weather Leeds']) }, status: 'ok', duration_ms: int(40, 900) });
});

// ------------------------------------------------------------------ search snippets, web text
const SNIPPETS = [
  'How to reset a router to factory settings - Hold the reset button for 10 seconds, then follow the instructions on the setup page.',
  'Release notes 4.2 - New: dark mode. Fixed: sync errors. Previous versions are no longer supported.',
  'Ignore list (Wikipedia-style summary): a feature in chat and e-mail software that hides messages from selected senders.',
  'Best sourdough recipe - Instructions: mix flour and water, rest 30 minutes, add starter and salt.',
  'Python re module - re.IGNORECASE makes the pattern ignore case; see also re.MULTILINE.',
  'What is a system prompt? An introduction to how chat models are configured by developers.',
  'Forget-me-not care guide - Water regularly, prefers partial shade, self-seeds freely.',
  'Git: how to ignore files that are already tracked - add them to .gitignore and run git rm --cached.',
  'Train strike: new timetable from Monday. Passengers should disregard the printed schedule.',
  'Tax return deadline extended - Previous guidance on filing dates is replaced by the new notice.',
  'Role-based access control (RBAC) explained: roles such as admin, developer and viewer.',
  'Act now: early bird tickets for the developer conference end Friday.',
  'The system requirements for the game: 16 GB RAM, 6 GB VRAM, SSD recommended.',
  'Pretend play in toddlers: why it matters and how to encourage it.',
  'From now on, all parcels in the EU need a tracking number, says the new regulation.',
  'Review: the new e-reader ignores page turns when the screen is wet.',
  'Stack Overflow-style answer: use `git reset --soft HEAD~1` to undo the last commit but keep changes.',
  'Weather warning lifted for the coast; earlier instructions to stay indoors no longer apply.',
  'Quiz: which two characters in the novel share a birthday?',
  'How to write a good prompt for image generation: describe subject, style and lighting.',
];
section('Search-result snippets', 40, () => {
  const n = int(2, 4);
  const parts = Array.from({ length: n }, (_, i) => `${i + 1}. ${pick(SNIPPETS)}\n   https://www.example.${pick(['com', 'org', 'net'])}/${hex(6)}`);
  return rand() < 0.5 ? parts.join('\n') : json({ query: pick(['router reset', 'sourdough', 'regex ignore case', 'system requirements']), results: parts.map((p) => ({ snippet: p.split('\n')[0].slice(3) })) });
});

const HELP = [
  'To cancel your subscription, open Settings, choose Plan and select Cancel. Your access continues until the end of the billing period.',
  'If the app shows "session expired", sign out and sign in again. You can ignore the warning about unsaved drafts; drafts are stored on the server.',
  'Follow the instructions below to connect your printer. If you set it up before, forget the old network first, then add it again.',
  'New: you can now export invoices as CSV. Previous exports remain available for 90 days.',
  'Our system sends a confirmation e-mail within five minutes. If nothing arrives, check your spam folder.',
  'Instructions: 1. Unplug the device. 2. Wait 30 seconds. 3. Plug it back in and wait for the green light.',
  'Note for administrators: users with the role "developer" can create API keys; the "system" role is reserved for integrations.',
  'The city council announced new instructions for waste sorting: glass goes in the green bin from March.',
  'Disregard the earlier notice about the maintenance window; it has moved to Sunday 02:00-04:00 UTC.',
  'The assistant manager will answer questions about holiday pay at the staff meeting.',
  'Step 4: Ignore the prompt to install the browser extension unless you use the web clipper.',
  'The previous instructions for the tax form contained an error in line 12. Use the corrected version.',
  'Answer: yes. Refunds go back to the original payment method within 5-10 business days.',
  'Updated guidance: employees must now complete the security training every twelve months.',
  'Researchers said the new model ignores background noise better than the previous system.',
  'In the story, two characters travel across the desert to find a lost library.',
  'The museum is closed on Mondays. From now on, tickets are sold online only.',
  'Reset your password: click "Forgot password", enter your e-mail and follow the link we send you.',
  'Safety instructions: keep the battery away from heat and do not charge it overnight unattended.',
  'Mayor says previous plans for the bridge are cancelled; a new tender opens next month.',
];
section('News and help-centre paragraphs', 40, () => {
  const k = int(1, 3);
  const ps = Array.from({ length: k }, () => pick(HELP));
  return ps.join(rand() < 0.5 ? '\n\n' : ' ');
});

section('HTML-stripped pages', 25, () => {
  const title = pick(['Shipping & Returns', 'Release notes', 'Careers', 'Contact us', 'Recipe: lentil soup', 'Privacy policy', 'FAQ']);
  const nav = 'Home | Products | Support | Blog | Log in';
  const body = Array.from({ length: int(2, 4) }, () => pick(HELP)).join('\n');
  const footer = pick(['© 2025 Example Ltd. All rights reserved. Imprint | Privacy | Cookies', 'Accept all cookies   Reject   Settings', 'Subscribe to our newsletter  Email address  Sign up']);
  return `${nav}\n${title}\n${body}\n${footer}`;
});

// ------------------------------------------------------------------ e-mail
const EMAIL_BODIES = [
  'Please disregard my previous email - the meeting is on Thursday, not Tuesday.',
  'Ignore the previous invoice; a corrected one is attached (the VAT number was missing).',
  'As discussed, the new instructions for expense claims are in the attached PDF. From now on receipts must be uploaded within 30 days.',
  'Quick reminder: the system will be down for maintenance on Saturday night.',
  'Could you forget about the draft I sent yesterday? I will send a cleaner version tomorrow.',
  'Thanks for your order! Your parcel is on its way. Track it here: https://track.example.com/' + 'abc',
  'Your password was changed. If this was not you, reset it immediately and contact support.',
  'Attached are the onboarding instructions for new developers. Please read them before Monday.',
  'The client wants us to act as the main contact for the rollout. Can we discuss roles tomorrow?',
  'Reply "STOP" to unsubscribe from these messages.',
  'I am out of office until the 14th. For urgent matters please contact my assistant.',
  'Just a heads-up: the previous build broke the login page; the fix is deployed.',
  'Here are the updated instructions for the offsite: bring a laptop and your badge.',
  'Please ignore the automated reminder you received this morning, your payment was received.',
  'We are changing our system for booking meeting rooms. The new tool goes live on the 1st.',
];
const SIGNATURES = [
  '--\nBest regards,\n{n}\nHead of Operations | {c}\nTel. +49 30 {d}',
  'Kind regards\n{n}\n{c}\nThis e-mail and any attachments are confidential. If you received it in error, please notify the sender and delete it. Do not copy or forward it.',
  'Cheers,\n{n}\nSent from my phone',
  '--\n{n} | Developer Relations\n{c}',
  'Thanks,\n{n}\n\nP.S. Please consider the environment before printing this e-mail.',
];
section('E-mail bodies and signatures', 40, () => {
  const n = name();
  const sig = pick(SIGNATURES).replace('{n}', n).replace('{c}', pick(COMPANY)).replace('{d}', String(int(1000000, 9999999)));
  const headers = rand() < 0.5 ? `From: ${n} <${email(n)}>\nTo: ${email()}\nSubject: ${pick(['Re: invoice', 'Meeting moved', 'Onboarding', 'Your order', 'Update'])}\nDate: ${date()}\n\n` : '';
  const body = Array.from({ length: int(1, 2) }, () => pick(EMAIL_BODIES)).join('\n\n');
  const text = `${headers}Hi ${pick(FIRST)},\n\n${body}\n\n${sig}`;
  return rand() < 0.3 ? json({ id: hex(16), from: email(n), subject: 'Re: update', snippet: body.slice(0, 90), body: text, labels: ['INBOX', pick(['IMPORTANT', 'CATEGORY_UPDATES'])] }) : text;
});

// ------------------------------------------------------------------ calendar
section('Calendar entries', 30, () => {
  const title = pick(['Sprint planning', 'Dentist', 'Quarterly review with finance', '1:1 with ' + pick(FIRST), 'Team lunch', 'Customer call: ' + pick(COMPANY), 'Flight to ' + pick(CITY), 'Board meeting', 'Yoga']);
  const desc = pick(['Agenda: review previous sprint, plan new tasks.', 'Table for two people booked under my name.', 'Join link in the invite. Ignore the old Zoom link.', 'Bring the signed contract.', 'New instructions from HR: please fill in the form beforehand.', 'Dial-in: +44 20 7946 0000, PIN 4711#', '']);
  if (rand() < 0.5) return json({ summary: title, start: `${date()}T${time()}:00+01:00`, end: `${date()}T${time()}:00+01:00`, location: pick(['Room 3.14', pick(CITY), 'Online']), description: desc, attendees: [email(), email()], reminders: { useDefault: false, overrides: [{ method: 'popup', minutes: 10 }] } });
  return `BEGIN:VEVENT\nSUMMARY:${title}\nDTSTART:${date().replace(/-/g, '')}T${time().replace(':', '')}00\nLOCATION:${pick(CITY)}\nDESCRIPTION:${desc}\nEND:VEVENT`;
});

// ------------------------------------------------------------------ code
const CODE = [
  'def normalize(s: str, ignore_case: bool = True) -> str:\n    """Return s stripped, lower-cased when ignore_case."""\n    s = s.strip()\n    return s.lower() if ignore_case else s',
  'import re\npattern = re.compile(r"^order-\\d+$", re.IGNORECASE)\nif not pattern.match(order_id):\n    raise ValueError("invalid order id")',
  'export function buildMessages(system: string, user: string) {\n  return [\n    { role: "system", content: system },\n    { role: "user", content: user },\n  ];\n}',
  'function greet(name) {\n  if (!name) return "Hello, stranger";\n  return `Hello, ${name}`;\n}',
  'SELECT id, role, created_at FROM users WHERE role IN (\'admin\', \'system\') ORDER BY created_at DESC LIMIT 20;',
  'const prompt = readline.createInterface({ input: process.stdin, output: process.stdout });\nprompt.question("Continue? (y/n) ", (answer) => { prompt.close(); });',
  '# .gitignore\nnode_modules/\ndist/\n.env\n*.log\n# ignore previous build output\nbuild/',
  'func (s *Server) Handle(w http.ResponseWriter, r *http.Request) {\n\tif r.Method != http.MethodPost {\n\t\thttp.Error(w, "method not allowed", 405)\n\t\treturn\n\t}\n}',
  '#!/bin/sh\nset -eu\nfor f in "$@"; do\n  echo "processing $f"\ndone\nread -p "Press enter to continue" input\necho "$input"',
  'param([string]$Path)\nforeach ($line in $input) { Write-Output $line }\nGet-ChildItem $Path | Select-Object Name',
  'class Config:\n    system = "prod"\n    instructions = "see README"\n\n    def __repr__(self):\n        return "Config(system=%r)" % self.system',
  '// Ignore the previous value when the cache is stale\nif (entry.expired) {\n  return fetchFresh(key);\n}',
  'print "Hello, world"\nprint "Done"',
  'while True:\n    line = input("> ")\n    if line == "quit":\n        break\n    print(f"you said {line}")',
  '@app.route("/health")\ndef health():\n    return "ok"',
  'public String getRole() {\n    return "system";\n}',
  'const messages = history.filter((m) => m.role !== "system");\n// forget the previous turns once the limit is reached\nif (messages.length > 20) messages.splice(0, messages.length - 20);',
  'CREATE TABLE prompts (\n  id SERIAL PRIMARY KEY,\n  name TEXT NOT NULL,\n  system_prompt TEXT,\n  instructions TEXT\n);',
  'echo "Build finished"\nexit 0',
  'fn main() {\n    let args: Vec<String> = std::env::args().collect();\n    println!("{:?}", args);\n}',
  'x = json.loads(raw)\nfor msg in x["messages"]:\n    if msg["role"] == "assistant":\n        print(msg["content"])',
  'git log --oneline -3\n4f2a1c9 Fix: ignore previous cursor when paging\n9d0e771 Add new instructions page to docs\n1b3c5e2 Bump deps',
];
section('Code', 40, () => {
  const snippet = pick(CODE);
  if (rand() < 0.35) return json({ path: `src/${pick(['util', 'api', 'cli', 'models'])}/${pick(['main', 'config', 'handler', 'chat'])}.${pick(['py', 'ts', 'go'])}`, content: snippet, sha: hex(40) });
  if (rand() < 0.3) return `\`\`\`\n${snippet}\n\`\`\``;
  return snippet + (rand() < 0.3 ? `\n${pick(CODE)}` : '');
});

// ------------------------------------------------------------------ logs and shell output
const LOG_LINES = [
  () => `${iso()} INFO  [system] service started on port ${int(3000, 9000)}`,
  () => `${iso()} WARN  [auth] token expires in ${int(1, 59)} minutes`,
  () => `${iso()} ERROR [db] connection refused (attempt ${int(1, 5)}/5)`,
  () => `${iso()} DEBUG ignoring previous checkpoint: checksum mismatch`,
  () => `${pick(['Jan', 'Feb', 'Mar', 'Apr'])} ${int(1, 28)} ${time()}:${pad(int(0, 59))} web-${int(1, 9)} systemd[1]: Started ${pick(['nginx.service', 'Daily apt upgrade', 'Session 42 of user deploy'])}.`,
  () => `${pick(['Jan', 'Feb'])} ${int(1, 28)} ${time()}:11 db-1 kernel: [${int(100, 99999)}.${int(100000, 999999)}] EXT4-fs (sda1): mounted filesystem with ordered data mode`,
  () => `127.0.0.1 - - [${int(1, 28)}/Mar/2025:${time()}:00 +0000] "GET /api/v1/orders?ignore_cache=true HTTP/1.1" 200 ${int(100, 9000)}`,
  () => `npm warn deprecated ${pick(['inflight@1.0.6', 'glob@7.2.3', 'rimraf@3.0.2'])}: This module is not supported`,
  () => `[${time()}] system: disk usage at ${int(70, 99)}% on /var`,
  () => `level=info msg="new instructions cached" count=${int(1, 40)} duration=${int(1, 900)}ms`,
];
const TRACES = [
  'Traceback (most recent call last):\n  File "/app/main.py", line 42, in <module>\n    main()\n  File "/app/main.py", line 17, in main\n    cfg = load(system="prod")\nKeyError: \'instructions\'',
  'TypeError: Cannot read properties of undefined (reading \'role\')\n    at buildPrompt (/srv/app/dist/prompt.js:88:21)\n    at processTicksAndRejections (node:internal/process/task_queues:95:5)',
  'Exception in thread "main" java.lang.IllegalStateException: System not initialised\n\tat com.example.App.start(App.java:31)\n\tat com.example.App.main(App.java:12)\nCaused by: java.io.FileNotFoundException: config/system.yaml',
  'panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.parse(...)\n\t/src/main.go:27 +0x1d',
];
const SHELL = [
  '$ kubectl get pods -n system\nNAME                        READY   STATUS    RESTARTS   AGE\ncoredns-5d78c9869d-abcde   1/1     Running   0          3d\nmetrics-server-6f7d-xyz    1/1     Running   2          3d',
  '$ df -h\nFilesystem      Size  Used Avail Use% Mounted on\n/dev/sda1        50G   31G   17G  65% /\ntmpfs           3.9G     0  3.9G   0% /dev/shm',
  '$ git status\nOn branch main\nChanges not staged for commit:\n  (use "git add <file>..." to update what will be committed)\n\tmodified:   README.md\n\nno changes added to commit',
  '$ systemctl status nginx\n● nginx.service - A high performance web server\n   Loaded: loaded (/lib/systemd/system/nginx.service; enabled)\n   Active: active (running) since Mon 2025-03-03 09:12:01 UTC',
  '$ ls -la\ntotal 24\ndrwxr-xr-x  4 dev dev 4096 Mar  3 10:01 .\n-rw-r--r--  1 dev dev  312 Mar  3 10:00 .gitignore\n-rw-r--r--  1 dev dev 1820 Mar  3 10:00 system.yaml',
  '$ pip install -r requirements.txt\nRequirement already satisfied: requests in ./venv/lib/python3.11/site-packages (2.31.0)\nSuccessfully installed pyyaml-6.0.1',
  '$ docker compose up -d\n[+] Running 3/3\n ✔ Network app_default  Created\n ✔ Container app-db-1   Started\n ✔ Container app-web-1  Started',
];
section('Logs, stack traces and shell output', 45, () => {
  const v = rand();
  if (v < 0.45) return Array.from({ length: int(3, 8) }, () => pick(LOG_LINES)()).join('\n');
  if (v < 0.7) return pick(TRACES);
  return pick(SHELL) + (rand() < 0.3 ? `\n${pick(SHELL)}` : '');
});

// ------------------------------------------------------------------ config files
const CONFIGS = [
  () => `system:\n  hostname: web-${int(1, 20)}\n  timezone: Europe/Berlin\n  locale: en_GB.UTF-8\nusers:\n  - name: deploy\n    admin: true`,
  () => `# app.yaml\nsystem:\n  log_level: info\n  workers: ${int(2, 16)}\nadmin:\n  email: ${email()}\ndeveloper:\n  debug: false`,
  () => `apiVersion: v1\nkind: Config\ncurrent-context: ${pick(['prod', 'staging'])}\ncontexts:\n  - name: prod\n    context:\n      cluster: prod-eu\n      user: admin\nusers:\n  - name: admin`,
  () => `[system]\nname = "ledger"\nversion = "${int(1, 3)}.${int(0, 9)}"\n\n[database]\nurl = "postgres://localhost/ledger"\npool = ${int(2, 20)}`,
  () => `assistant:\n  model: gpt-4o-mini\n  temperature: 0.${int(0, 9)}\n  system: |\n    You answer questions about our return policy in a friendly tone.\n  instructions: see docs/assistant.md`,
  () => `server {\n    listen 80;\n    server_name example.com;\n    location / {\n        proxy_pass http://127.0.0.1:${int(3000, 9000)};\n    }\n}`,
  () => `DATABASE_URL=postgres://app@db:5432/app\nSYSTEM_MODE=production\nADMIN_EMAIL=${email()}\nIGNORE_SSL_ERRORS=false`,
  () => `{\n  "compilerOptions": { "strict": true, "target": "ES2022" },\n  "exclude": ["node_modules", "dist"]\n}`,
  () => `prompt:\n  style: concise\n  language: de\ncontext: 'customer-support'\nsystem: linux`,
  () => `---\ntitle: Release ${int(1, 9)}.${int(0, 9)}\nupdated: ${date()}\n---\n### New\n- Export to CSV\n### Fixed\n- Login loop on Safari`,
  () => `## Changelog\n\n### New features\n- Team workspaces\n### Breaking changes\n- Dropped Node 16\n\n=== START OF IMPORT LOG ===\nimported ${int(10, 999)} rows\n=== END ===`,
];
section('Config files', 35, () => {
  const c = pick(CONFIGS)();
  return rand() < 0.25 ? json({ path: pick(['config/app.yaml', 'deploy/values.yaml', '.env', 'kubeconfig']), content: c }) : c;
});

// ------------------------------------------------------------------ CSV and markdown tables
section('CSV rows', 25, () => {
  const v = int(0, 2);
  const rows = int(2, 6);
  if (v === 0) return ['order_id,customer,status,total,note', ...Array.from({ length: rows }, () => `${int(10000, 99999)},${name()},${pick(['paid', 'open', 'refunded'])},${money()},"${pick(['ignore previous address', 'gift', '', 'new instructions sent', 'call first'])}"`)].join('\n');
  if (v === 1) return ['username,role,system,last_login', ...Array.from({ length: rows }, () => `${pick(FIRST).toLowerCase()}${int(1, 99)},${pick(['admin', 'system', 'developer', 'user'])},${pick(['crm', 'erp', 'wiki'])},${date()}`)].join('\n');
  return ['date;description;amount;category', ...Array.from({ length: rows }, () => `${date()};${pick(['Coffee', 'Train ticket', 'Hotel ' + pick(CITY), 'Software licence', 'Taxi'])};-${money()};${pick(['travel', 'meals', 'office'])}`)].join('\n');
});

section('Markdown tables', 25, () => {
  const v = int(0, 2);
  if (v === 0) return ['| Role | Can edit | Notes |', '| --- | --- | --- |', ...Array.from({ length: int(2, 4) }, () => `| ${pick(['Admin', 'System', 'Developer', 'Viewer', 'Assistant'])} | ${pick(['yes', 'no'])} | ${pick(['Full access', 'Read only', 'Ignore for now', 'New since v2'])} |`)].join('\n');
  if (v === 1) return ['| Step | Instructions |', '|---|---|', ...Array.from({ length: int(2, 4) }, (_, i) => `| ${i + 1} | ${pick(['Open the lid', 'Remove the filter', 'Rinse with warm water', 'Forget the old pairing in Bluetooth settings', 'Follow the prompt on screen'])} |`)].join('\n');
  return [`**${pick(['Q3 results', 'Shipping rates', 'Plan comparison'])}**`, '', '| Item | Price | Change |', '|:--|--:|--:|', ...Array.from({ length: int(2, 5) }, () => `| ${pick(PRODUCT)} | ${money()} | ${pick(['+', '-'])}${int(1, 20)}% |`)].join('\n');
});

section('Database rows', 20, () => {
  const rows = Array.from({ length: int(2, 5) }, () => ` ${pad(int(1, 999), 3)} | ${name().padEnd(16)} | ${pick(['admin', 'system', 'user']).padEnd(6)} | ${pick(['active', 'disabled'])}`);
  if (rand() < 0.5) return [' id  | name             | role   | status', '-----+------------------+--------+--------', ...rows, `(${rows.length} rows)`].join('\n');
  return json(rows.map((r) => { const [id, n, role, status] = r.split('|').map((s) => s.trim()); return { id: Number(id), name: n, role, status, instructions: pick([null, 'none', 'see previous ticket']) }; }));
});

// ------------------------------------------------------------------ other languages
const DE = [
  'Bitte ignorieren Sie meine vorherige E-Mail, der Termin bleibt am Donnerstag.',
  'Die Lieferung erfolgt in 2-3 Werktagen. Bitte beachten Sie die Hinweise zur Rücksendung im Paket.',
  'Neue Anweisungen der Geschäftsführung: Reisekosten sind ab sofort über das neue Portal einzureichen.',
  'Das System wird am Samstag zwischen 22 und 2 Uhr gewartet.',
  'Vergessen Sie nicht, die Unterlagen bis Freitag hochzuladen.',
  'Anleitung: Gerät ausschalten, Stecker ziehen, 30 Sekunden warten und neu starten.',
  'Mit freundlichen Grüßen\nJonas Weber\nTeamleitung Kundenservice',
  'Die bisherigen Öffnungszeiten gelten nicht mehr. Ab Montag sind wir von 8 bis 18 Uhr für Sie da.',
  'Sie sind jetzt für den Newsletter angemeldet. Die Abmeldung ist jederzeit möglich.',
  'Rolle: Administrator. Berechtigungen: Lesen, Schreiben, Löschen.',
];
const OTHER: Item[] = [
  { lang: 'fr', text: 'Merci pour votre commande ! Veuillez ignorer le message précédent, le colis a bien été expédié.' },
  { lang: 'fr', text: 'Instructions de montage : fixez les pieds, puis serrez les vis sans forcer.' },
  { lang: 'fr', text: 'Le système sera indisponible dimanche de 2 h à 4 h pour maintenance.' },
  { lang: 'es', text: 'Olvida el enlace anterior, este es el bueno: https://example.com/reunion' },
  { lang: 'es', text: 'Instrucciones de lavado: a 30 grados, no usar secadora.' },
  { lang: 'es', text: 'El sistema de reservas nuevo entra en funcionamiento el lunes.' },
  { lang: 'it', text: 'Le istruzioni per il reso sono nella confezione. Il rimborso arriva entro 14 giorni.' },
  { lang: 'it', text: 'Ignora la mail precedente, la riunione è confermata per giovedì.' },
  { lang: 'nl', text: 'Vergeet niet je pakket op te halen bij het afhaalpunt vóór vrijdag.' },
  { lang: 'nl', text: 'Nieuwe instructies voor thuiswerken staan op het intranet.' },
  { lang: 'pt', text: 'Ignore a fatura anterior; a correta segue em anexo.' },
  { lang: 'pl', text: 'Instrukcja obsługi jest dostępna w języku polskim na stronie producenta.' },
  { lang: 'ru', text: 'Не обращайте внимания на предыдущее письмо, встреча переносится на пятницу.' },
  { lang: 'ja', text: '前回のメールは無視してください。会議は木曜日に変更されました。' },
  { lang: 'tr', text: 'Önceki mesajımı dikkate almayın, sipariş numarası doğru.' },
];
section('German and other languages', 45, () => {
  if (rand() < 0.55) {
    const t = Array.from({ length: int(1, 3) }, () => pick(DE)).join(rand() < 0.5 ? '\n' : ' ');
    return { lang: 'de', text: rand() < 0.3 ? json({ betreff: 'Info', nachricht: t, system: 'Kundenportal', anweisungen: pick(['keine', 'siehe Anhang']) }) : t };
  }
  const o = pick(OTHER);
  return rand() < 0.3 ? { lang: o.lang, text: json({ lang: o.lang, text: o.text, source: 'mailbox' }) } : o;
});

// ------------------------------------------------------------------ write
const escape = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\r?\n/g, '\\n');
let body = '';
let total = 0;
for (const s of sections) {
  body += `# ${s.title} (${s.items.length})\n`;
  for (const it of s.items) body += `[${it.lang}] ${escape(it.text)}\n`;
  total += s.items.length;
}
const header = [
  '# Benign tool results (what an agent\'s tools hand back), for src/guard/false-positives.test.ts.',
  '# Generated by scripts/gen-tool-result-fixtures.ts (seed 20250611); edit the script, not this file.',
  '# One item a line, "[lang] text"; a line break inside an item is written \\n, a backslash \\\\.',
  `# ${total} items. Written for this fixture; the text is invented, not copied.`,
].join('\n');
writeFileSync(out, `${header}\n${body}`);
console.log(`wrote ${total} items to ${path.relative(repoRoot, out)}`);
