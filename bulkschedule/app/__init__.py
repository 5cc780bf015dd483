"""One sheet through the pipeline, and around it: settings, targets, inbox, logs, workbooks."""
