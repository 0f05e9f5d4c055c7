// A real OpenID Connect provider for bonebank's identity tests: two issuers
// ("a", the one the network trusts, and "b", another one) built with
// oidc-provider, each on a loopback port the system chooses. Prints one JSON
// line with their URLs when ready, and exits when its stdin closes.
//
// Test scaffolding only: the sign-in page takes any listed user without a
// password, and POST /test/mint signs arbitrary claims so that the tests can
// make expired, misaddressed and forged tokens.

import http from 'node:http';
import crypto from 'node:crypto';
import { once } from 'node:events';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const AUDIENCE = 'urn:bonebank';

const accounts = {
  alice: { bonebank_role: 'researcher', bonebank_project: 'hip-fracture-msc', email: 'alice@researcher.example' },
  ingrid: { bonebank_role: 'industry', bonebank_project: 'msc-scoping', email: 'ingrid@industry.example' },
  'steward-de-lue': { bonebank_role: 'steward', bonebank_sites: ['DE-LUE'] },
  'steward-dk-ode': { bonebank_role: 'steward', bonebank_sites: ['DK-ODE'] },
  'steward-dk-nae': { bonebank_role: 'steward', bonebank_sites: ['DK-NAE'] },
};

async function signingKey(kid) {
  const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid, alg: 'ES256', use: 'sig' };
}

const html = (title, body) => `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function start(name) {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const key = await signingKey(`${name}-key-1`);

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'bonebank-coordinator',
        client_secret: 'coordinator-test-secret',
        // Native clients may use any loopback port, which the tests need.
        application_type: 'native',
        redirect_uris: ['http://127.0.0.1/auth/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
      },
      {
        client_id: 'bonebank-cli',
        application_type: 'native',
        redirect_uris: [],
        response_types: [],
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        token_endpoint_auth_method: 'none',
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [key] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access'],
    claims: { openid: ['sub'] },
    ttl: { AccessToken: 300, IdToken: 300, RefreshToken: 3600, DeviceCode: 600 },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: (ctx, form, out, err) => {
          ctx.body = html('Device sign-in', `${err ? `<p class="error">${err.name}</p>` : ''}${form}`);
        },
        userCodeConfirmSource: (ctx, form, client, deviceInfo, userCode) => {
          ctx.body = html('Confirm device', `<p>Code ${userCode}</p>${form}`);
        },
        successSource: (ctx) => {
          ctx.body = html('Device signed in', '<p>Signed in; return to the device.</p>');
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'bonebank',
          audience: AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: (ctx, id) => (accounts[id] ? { accountId: id, claims: () => ({ sub: id }) } : undefined),
    extraTokenClaims: (ctx, token) => (token.accountId ? accounts[token.accountId] : undefined),
    issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // First-party clients: no consent screen.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const existing = await ctx.oidc.provider.Grant.find(grantId);
        if (existing) return existing;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid offline_access');
      grant.addResourceScope(AUDIENCE, 'bonebank');
      await grant.save();
      return grant;
    },
  });

  const stray = await signingKey('not-published');
  const rsa = await jose.generateKeyPair('RS256', { extractable: true });
  const mintKeys = {
    own: [await jose.importJWK(key, 'ES256'), 'ES256', key.kid],
    stray: [await jose.importJWK(stray, 'ES256'), 'ES256', stray.kid],
    'rsa-with-own-kid': [rsa.privateKey, 'RS256', key.kid],
  };

  const callback = provider.callback();
  server.on('request', async (req, res) => {
    try {
      const url = new URL(req.url, issuer);
      if (url.pathname.startsWith('/interaction/')) {
        const details = await provider.interactionDetails(req, res);
        if (details.prompt.name === 'consent') {
          // First-party clients: grant what is asked without a screen.
          const { missingOIDCScope, missingResourceScopes } = details.prompt.details;
          const grant = details.grantId
            ? await provider.Grant.find(details.grantId)
            : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
          if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
          for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
            grant.addResourceScope(indicator, scopes.join(' '));
          }
          const grantId = await grant.save();
          await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
          return;
        }
        if (req.method === 'GET') {
          res.setHeader('content-type', 'text/html; charset=utf-8');
          res.end(html('Sign in', `<form id="login" method="post" action="${url.pathname}"><input name="login"><button>Sign in</button></form>`));
          return;
        }
        const form = await readForm(req);
        const login = form.get('login');
        if (!accounts[login]) {
          res.statusCode = 400;
          res.end(html('Unknown user', `<p>${login} is not a test user</p>`));
          return;
        }
        await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
        return;
      }
      if (url.pathname === '/test/mint' && req.method === 'POST') {
        const chunks = [];
        for await (const chunk of req) chunks.push(chunk);
        const { claims, key: which = 'own' } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        const [signer, alg, kid] = mintKeys[which];
        const token = await new jose.SignJWT(claims).setProtectedHeader({ alg, kid, typ: 'at+jwt' }).sign(signer);
        res.setHeader('content-type', 'text/plain');
        res.end(token);
        return;
      }
      callback(req, res);
    } catch (err) {
      res.statusCode = 500;
      res.end(String(err));
    }
  });
  return issuer;
}

const a = await start('a');
const b = await start('b');
process.stdout.write(`${JSON.stringify({ a, b })}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
