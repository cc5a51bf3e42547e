"""Flex Template entry point: the template launcher runs this file with the job's parameters.

Template parameters arrive as `--name=value` (names are identifiers, booleans are true/false);
`flex_template_argv` maps them onto `ae-tf encode`'s flags and leaves Beam's options untouched.
"""

import sys

from ae_tf_cli import main
from pipelines.runner.dataflow import flex_template_argv
from pipelines.runner.options import encode_arg_parser

if __name__ == "__main__":
    sys.exit(main(["encode", *flex_template_argv(sys.argv[1:], encode_arg_parser())]))
