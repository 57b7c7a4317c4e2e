// One long-lived STS client from the AWS SDK for Go v2, built the way an
// application builds it (config.LoadDefaultConfig, the default credential
// chain), driven over stdin: each line makes one GetCallerIdentity call and
// prints "ok ARN" or "err MESSAGE". Used by the SDK matrix tests
// (tests/sdk_matrix.rs); built offline against Debian's
// golang-github-aws-aws-sdk-go-v2-dev in GOPATH mode (make sdk-deps).
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sdk-driver-go ENDPOINT")
		os.Exit(64)
	}
	endpoint := os.Args[1]
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("eu-west-1"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "load config:", err)
		os.Exit(1)
	}
	client := sts.NewFromConfig(cfg, func(o *sts.Options) {
		o.EndpointResolver = sts.EndpointResolverFromURL(endpoint)
	})
	fmt.Println("ready")
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			fmt.Println("err", strings.Join(strings.Fields(err.Error()), " "))
			continue
		}
		fmt.Println("ok", aws.ToString(out.Arn))
	}
}
