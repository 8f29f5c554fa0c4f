"""Old import path of the shared data flags, kept while branches that import it land: use stylemri.cli.options."""

from stylemri.cli.options import (  # noqa: F401
    add_data_args, add_subject_args, cache_progress, data_config_from_args, print_data_warnings,
    subject_options_from_args,
)
