# As in Django's pt_BR formats, with the seconds (see ../en/formats.py).
TIME_FORMAT = "H:i:s"
SHORT_DATETIME_FORMAT = "d/m/Y H:i:s"
