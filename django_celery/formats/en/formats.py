# Seconds matter here (a retry a few seconds away, when a mail arrived): Django's
# English TIME_FORMAT ("P": "3 p.m.") drops them.
TIME_FORMAT = "H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
