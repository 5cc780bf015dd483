"""A local stand-in for the Zoho People LMS API. Depends on ``bulkschedule.core`` only."""
