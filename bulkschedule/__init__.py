"""bulkschedule: load a term of training sessions from a spreadsheet into Zoho People LMS."""

__version__ = "0.1.0"
