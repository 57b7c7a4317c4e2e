"""One long-lived boto3 STS client, built the way an application builds it
(the default credential chain), driven over stdin: each line makes one
GetCallerIdentity call and prints "ok ARN" or "err NAME MESSAGE"."""
import sys

import boto3

# botocore resolves credentials when the client is made: made at the first
# call, so that a failure there is reported like any other.
client = None
print("ready", flush=True)
for _ in sys.stdin:
    try:
        if client is None:
            client = boto3.session.Session().client("sts", endpoint_url=sys.argv[1], region_name="eu-west-1")
        print("ok", client.get_caller_identity()["Arn"], flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported to the test
        print("err", type(e).__name__, " ".join(str(e).split()), flush=True)
