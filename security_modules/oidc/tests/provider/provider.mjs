// A throwaway OpenID provider for the hearth-auth-oidc tests.
//
// `node provider.mjs` listens on a random free port of 127.0.0.1 and prints one
// JSON line on standard output once it accepts connections:
//
//   {"issuer":"http://127.0.0.1:PORT","port":PORT,"tls_port":null}
//
// With HEARTH_TEST_TLS_CERT and HEARTH_TEST_TLS_KEY (PEM files) it also
// serves the /test/* endpoints over HTTPS on a second port (`tls_port`).
// Node.js 20.19 or later; `npm ci` in this directory installs the packages.
//
// It exits when its standard input closes (the test binary holds the other end
// of the pipe), so no provider outlives the tests.
//
// Served on the one port:
//
// - the real provider (oidc-provider): discovery, /jwks, /token. Two static
//   clients use the client_credentials grant; access tokens are JWTs
//   (resource indicators) for the audience named by `resource`, signed with the
//   algorithm the resource server names (see RESOURCE_SERVERS).
// - /test/* endpoints, for what a real provider never issues:
//   - POST /test/sign {key, alg?, header?, claims} signs `claims` with one of
//     the generated keys (KEYS), or with HMAC-SHA256 keyed by the PEM text of
//     a public key (`"key": "hmac-with-public-key"`, the key-confusion attack).
//     `header` fields are merged into the protected header (`"kid": null`
//     removes the kid).
//   - POST /test/ns/NAME {...} configures the namespace NAME, which a test
//     owns (tests run in parallel and must not see each other's changes):
//     `keys` (names of KEYS published in its JWKS), `junk` (add keys a
//     validator must ignore), `status`/`body` (answer the JWKS with this
//     instead), `delay_ms` (wait before answering), `discovery_issuer` (the
//     issuer its discovery document names).
//   - GET /test/ns/NAME/jwks serves and counts; GET /test/ns/NAME/hits tells
//     {"jwks": n, "discovery": n}; GET /test/ns/NAME/.well-known/openid-configuration
//     is a discovery document whose jwks_uri is the namespace's JWKS.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import { CompactSign } from 'jose';
import Provider from 'oidc-provider';

// The test binary holds our standard input: when it goes, so do we (and the
// directory it named in HEARTH_TEST_CLEANUP_DIR, if any).
function quit() {
  const dir = process.env.HEARTH_TEST_CLEANUP_DIR;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.stdin.on('end', quit);
process.stdin.on('close', quit);
process.stdin.on('error', quit);
process.stdin.resume();

// Signing keys, generated at each start. The first four are the provider's
// own (published at /jwks); `rs-2` is published only where a test adds it
// (key rotation); `stranger` is never published.
const KEY_SPECS = [
  ['rs-1', 'RS256', 'rsa', { modulusLength: 2048 }],
  ['ps-1', 'PS256', 'rsa', { modulusLength: 2048 }],
  ['es-1', 'ES256', 'ec', { namedCurve: 'P-256' }],
  ['ed-1', 'EdDSA', 'ed25519', {}],
  ['rs-2', 'RS256', 'rsa', { modulusLength: 2048 }],
  ['stranger', 'RS256', 'rsa', { modulusLength: 2048 }],
];
const PROVIDER_KEYS = ['rs-1', 'ps-1', 'es-1', 'ed-1'];

const KEYS = new Map();
for (const [kid, alg, type, options] of KEY_SPECS) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync(type, options);
  KEYS.set(kid, {
    kid,
    alg,
    privateKey,
    publicKey,
    privateJwk: { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }),
  });
}

// Audience (resource indicator) → signing algorithm of its JWT access tokens.
const RESOURCE_SERVERS = {
  'https://fhir.example.test': 'RS256',
  'https://fhir-ps.example.test': 'PS256',
  'https://fhir-es.example.test': 'ES256',
  'https://fhir-ed.example.test': 'EdDSA',
};
const SCOPES = 'system/Patient.rs system/Observation.rs system/*.read launch/patient fhirUser';

const CLIENTS = [
  {
    // Its tokens carry the extra claims below.
    client_id: 'hearth-test',
    client_secret: 'hearth-test-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: SCOPES,
  },
  {
    // Its tokens carry only what oidc-provider puts in.
    client_id: 'hearth-plain',
    client_secret: 'hearth-plain-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: SCOPES,
  },
];

const EXTRA_CLAIMS = {
  preferred_username: 'svc-reporting',
  realm_access: { roles: ['clinician', 'auditor'] },
  groups: 'night-shift  ward-7',
  fhirUser: 'Practitioner/77',
  patient: '123',
};

const namespaces = new Map();
function namespace(name) {
  if (!namespaces.has(name)) {
    namespaces.set(name, { config: { keys: PROVIDER_KEYS }, jwks: 0, discovery: 0 });
  }
  return namespaces.get(name);
}

function junkKeys() {
  const rs1 = KEYS.get('rs-1').publicJwk;
  return [
    // rs-1's material for encryption: never a signature key.
    { ...rs1, kid: 'enc-1', use: 'enc', alg: 'RSA-OAEP' },
    // A symmetric key: never used, whatever the token says.
    { kty: 'oct', kid: 'oct-1', k: Buffer.from(KEYS.get('rs-1').publicPem).toString('base64url') },
    // Unknown key type and broken entries: skipped, the rest still served.
    { kty: 'XYZ', kid: 'odd-1' },
    { kty: 'RSA', kid: 'broken-1', e: 'AQAB' },
    'not a key',
  ];
}

function jwksOf(config) {
  const keys = (config.keys || []).map((name) => KEYS.get(name).publicJwk);
  return { keys: config.junk ? [...keys, ...junkKeys()] : keys };
}

async function sign({ key, alg, header = {}, claims }) {
  const payload = new TextEncoder().encode(JSON.stringify(claims));
  if (key === 'hmac-with-public-key') {
    // The classic confusion: the verifier's public key (PEM text) as the HMAC secret.
    const secret = new TextEncoder().encode(KEYS.get('rs-1').publicPem);
    const protectedHeader = { alg: alg || 'HS256', kid: 'rs-1', ...header };
    dropNulls(protectedHeader);
    return new CompactSign(payload).setProtectedHeader(protectedHeader).sign(secret);
  }
  const k = KEYS.get(key);
  if (!k) throw new Error(`unknown key ${key}`);
  const protectedHeader = { alg: alg || k.alg, kid: k.kid, typ: 'at+jwt', ...header };
  dropNulls(protectedHeader);
  return new CompactSign(payload).setProtectedHeader(protectedHeader).sign(k.privateKey);
}

function dropNulls(object) {
  for (const [name, value] of Object.entries(object)) {
    if (value === null) delete object[name];
  }
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
}

function send(res, status, body, type = 'application/json') {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(text);
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function testEndpoint(req, res, issuer, path) {
  if (req.method === 'POST' && path === '/test/sign') {
    return send(res, 200, await sign(await readJson(req)), 'text/plain');
  }
  const m = /^\/test\/ns\/([A-Za-z0-9_-]+)(\/.*)?$/.exec(path);
  if (!m) return send(res, 404, { error: 'no such test endpoint' });
  const [, name, rest = ''] = m;
  const ns = namespace(name);
  if (req.method === 'POST' && rest === '') {
    ns.config = await readJson(req);
    return send(res, 200, { ok: true });
  }
  if (req.method === 'GET' && rest === '/hits') {
    return send(res, 200, { jwks: ns.jwks, discovery: ns.discovery });
  }
  if (req.method === 'GET' && rest === '/jwks') {
    ns.jwks += 1;
    const { config } = ns;
    if (config.delay_ms) await sleep(config.delay_ms);
    if (config.status || config.body !== undefined) {
      return send(res, config.status || 200, config.body ?? '');
    }
    return send(res, 200, jwksOf(config), 'application/jwk-set+json');
  }
  if (req.method === 'GET' && rest === '/.well-known/openid-configuration') {
    ns.discovery += 1;
    const base = `${issuer}/test/ns/${name}`;
    return send(res, 200, {
      issuer: ns.config.discovery_issuer || base,
      jwks_uri: `${base}/jwks`,
    });
  }
  return send(res, 404, { error: 'no such test endpoint' });
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

const server = http.createServer();
const port = await listen(server);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: CLIENTS,
  scopes: ['openid', ...SCOPES.split(' ')],
  jwks: { keys: PROVIDER_KEYS.map((name) => KEYS.get(name).privateJwk) },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://fhir.example.test',
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        const alg = RESOURCE_SERVERS[resource];
        if (!alg) throw new Provider.errors.InvalidTarget();
        return {
          scope: SCOPES,
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        };
      },
    },
  },
  enabledJWA: {
    idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
  },
  extraTokenClaims: (_ctx, token) => (
    token.clientId === 'hearth-test' ? EXTRA_CLAIMS : undefined
  ),
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
});
const callback = provider.callback();

function handler(withProvider) {
  return (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    if (path.startsWith('/test/')) {
      testEndpoint(req, res, issuer, path).catch((e) => send(res, 500, { error: String(e) }));
    } else if (withProvider) {
      callback(req, res);
    } else {
      send(res, 404, { error: 'only /test/* is served here' });
    }
  };
}
server.on('request', handler(true));

let tlsPort = null;
const { HEARTH_TEST_TLS_CERT: certFile, HEARTH_TEST_TLS_KEY: keyFile } = process.env;
if (certFile && keyFile) {
  const tlsServer = https.createServer(
    { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) },
    handler(false),
  );
  tlsPort = await listen(tlsServer);
}

process.stdout.write(`${JSON.stringify({ issuer, port, tls_port: tlsPort })}\n`);
