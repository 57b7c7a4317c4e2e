"""The boto3 refresher of `make bench ROWS=compare` (benches/sidecar/rows/compare.rs):
one STS client, one round of AssumeRoleWithWebIdentity for every role ARN given,
written as an INI file; then one more round per line on standard input. Prints
its CPU and wall time per round as JSON.

    python boto3_refresher.py ENDPOINT REGION TOKEN_FILE OUT ROLE_ARN...
"""

import json, os, resource, sys, time

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

import boto3

endpoint, region, token_file, out = sys.argv[1:5]
arns = sys.argv[5:]
sts = boto3.client("sts", endpoint_url=endpoint, region_name=region)

def refresh():
    with open(token_file) as f:
        token = f.read().strip()
    lines = []
    for i, arn in enumerate(arns, 1):
        c = sts.assume_role_with_web_identity(
            RoleArn=arn, RoleSessionName="bench", WebIdentityToken=token
        )["Credentials"]
        lines += [
            f"[p{i}]",
            f"aws_access_key_id = {c['AccessKeyId']}",
            f"aws_secret_access_key = {c['SecretAccessKey']}",
            f"aws_session_token = {c['SessionToken']}",
            "",
        ]
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, out)

c0, t0 = cpu(), time.monotonic()
refresh()
print(json.dumps({"cpu": cpu(), "round_cpu": cpu() - c0, "wall": time.monotonic() - t0}), flush=True)
for _ in sys.stdin:
    c0, t0 = cpu(), time.monotonic()
    refresh()
    print(json.dumps({"cpu": cpu(), "round_cpu": cpu() - c0, "wall": time.monotonic() - t0}), flush=True)
