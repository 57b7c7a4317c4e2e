#!/usr/bin/env python3
"""boto3 reading rolecall's profiles by name.

Run with AWS_SHARED_CREDENTIALS_FILE=/aws/credentials and
AWS_CONFIG_FILE=/aws/config (see ../kubernetes/deployment.yaml).

botocore reads the credentials file once per Session. That is fine for a
short-lived process like this one. A service that keeps its clients for hours
should use rolecall's process mode (../kubernetes/process-mode.yaml): the same
code then refreshes by itself through credential_process.
"""

import boto3


def whoami(profile: str) -> str:
    session = boto3.Session(profile_name=profile)
    return session.client("sts").get_caller_identity()["Arn"]


def main() -> None:
    for profile in ("reader", "writer"):
        print(f"{profile}: {whoami(profile)}")


if __name__ == "__main__":
    main()
