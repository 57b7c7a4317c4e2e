#!/bin/sh
# The AWS CLI (v1 or v2) reading rolecall's files. The CLI reads them afresh
# on every run, so file mode is all it needs.
#
# In the pod these come from the container's env (see ../kubernetes/):
set -eu
export AWS_SHARED_CREDENTIALS_FILE="${AWS_SHARED_CREDENTIALS_FILE:-/aws/credentials}"
export AWS_CONFIG_FILE="${AWS_CONFIG_FILE:-/aws/config}"

# One profile for everything in this shell:
export AWS_PROFILE=reader
aws sts get-caller-identity

# Another profile for one command:
aws sts get-caller-identity --profile writer

# Or for one command, through the environment:
AWS_PROFILE=audit aws sts get-caller-identity

# The region comes from the profile's section in /aws/config.
aws configure get region --profile writer
