// google-auth-library for Node.js, configured with nothing but GCE_METADATA_HOST and
// GCE_METADATA_IP: it must detect Compute Engine (gcp-metadata's `GET .../instance`), pick its
// Compute client, and get an access token, the project id, the universe domain, the service
// account's address and an ID token from the endpoint. Prints one JSON document.
"use strict";

const { GoogleAuth } = require("google-auth-library");
const gcpMetadata = require("gcp-metadata");

async function main() {
  const audience = process.argv[2] || "https://run.example.com";
  const available = await gcpMetadata.isAvailable();
  const auth = new GoogleAuth({
    scopes: ["https://www.googleapis.com/auth/cloud-platform"],
  });
  const client = await auth.getClient();
  const projectId = await auth.getProjectId();
  const universe = await auth.getUniverseDomain();
  const { token } = await client.getAccessToken();
  const credentials = await auth.getCredentials();
  const idClient = await auth.getIdTokenClient(audience);
  const idHeaders = await idClient.getRequestHeaders();
  const authorization =
    typeof idHeaders.get === "function"
      ? idHeaders.get("authorization")
      : idHeaders.Authorization || idHeaders.authorization;
  const zone = await gcpMetadata.instance("zone").then(
    (z) => ({ value: z }),
    (e) => ({ status: e.response ? e.response.status : String(e) })
  );
  process.stdout.write(
    JSON.stringify({
      available,
      client: client.constructor.name,
      project_id: projectId,
      universe_domain: universe,
      access_token: token,
      email: credentials.client_email,
      id_token: (authorization || "").replace(/^Bearer /, ""),
      zone,
    }) + "\n"
  );
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
