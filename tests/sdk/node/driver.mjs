// One long-lived STS client built the way an application builds it (the
// default credential chain), driven over stdin: each line makes one
// GetCallerIdentity call and prints "ok ARN" or "err NAME MESSAGE".
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import readline from "node:readline";

const client = new STSClient({ endpoint: process.argv[2], region: "eu-west-1" });
console.log("ready");
const lines = readline.createInterface({ input: process.stdin });
for await (const _ of lines) {
  try {
    const out = await client.send(new GetCallerIdentityCommand({}));
    console.log("ok", out.Arn);
  } catch (e) {
    console.log("err", e.name, String(e.message).replace(/\s+/g, " "));
  }
}
