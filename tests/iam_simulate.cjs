// Evaluates IAM requests with @cloud-copilot/iam-simulate (deploy/package.json), for
// tests/deploy/test_platform.py: reads a JSON list of simulations on stdin, prints one result per
// simulation ("Allowed", "ImplicitlyDenied", "ExplicitlyDenied", or "error: ...") as JSON.
const { runSimulation } = require('@cloud-copilot/iam-simulate')

async function main() {
  let input = ''
  for await (const chunk of process.stdin) input += chunk
  const results = []
  for (const s of JSON.parse(input)) {
    const response = await runSimulation({
      request: {
        principal: s.principal,
        action: s.action,
        resource: { resource: s.resource, accountId: s.accountId },
        contextVariables: s.context || {}
      },
      identityPolicies: s.identityPolicies,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: s.resourcePolicy
    }, {})
    results.push(response.resultType === 'error'
      ? 'error: ' + JSON.stringify(response.errors)
      : response.overallResult)
  }
  process.stdout.write(JSON.stringify(results))
}
main().catch((e) => { console.error(e); process.exit(1) })
