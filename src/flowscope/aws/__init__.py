"""AWS VPC Flow Logs capture: enable a time-boxed, troubleshooting-format flow log, fetch what
it delivered, estimate what it costs, and remove it when its window ends.

Everything goes through boto3 with the standard credential chain (:mod:`.session`); errors
come back in the user's terms with the fix (:mod:`.errors`).  Expiry lives in the flow log's
own tags (``flowscope:expires``), so any later ``cleanup`` removes it, from any machine.
"""
