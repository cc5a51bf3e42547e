"""The `ae-tf report` page: inputs gathered, figures drawn, one self-contained HTML file written."""
