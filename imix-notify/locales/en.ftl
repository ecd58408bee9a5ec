# English strings of imix emails (Fluent syntax: https://projectfluent.org).
product = iMix
footer = This email was sent by { $product }. Please do not reply to it.
link-fallback = If the button does not work, copy this address into your browser:

link-validity = This link is valid for { $hours ->
    [one] one hour
   *[other] { $hours } hours
}.

invitation-subject = You are invited to join { $organization } on { $product }
invitation-heading = Welcome, { $name }
invitation-body = You have been invited to join { $organization } on { $product }. Choose your password to activate your account.
invitation-action = Set my password
invitation-note = If you did not expect this invitation, you can ignore this email.

password-reset-subject = Reset your { $product } password
password-reset-heading = Password reset
password-reset-body = Hello { $name }, we received a request to reset the password of your { $product } account. Choose a new password with the link below.
password-reset-action = Choose a new password
password-reset-note = If you did not ask for this, ignore this email: your password stays unchanged.

smtp-test-subject = { $product } SMTP test
smtp-test-heading = Your SMTP settings work
smtp-test-body = This test email was sent through { $host }. There is nothing else to do.

usage-80-subject = { $tenant }: 80% of today's message limit used
usage-80-heading = Daily message limit almost reached
usage-80-body = { $tenant } has sent { $used } of the { $limit } messages allowed today. When the limit is reached, sending stops until midnight UTC.
usage-100-subject = { $tenant }: today's message limit is reached
usage-100-heading = Daily message limit reached
usage-100-body = { $tenant } has sent { $used } of the { $limit } messages allowed today. New messages will not be sent until midnight UTC; ask your platform administrator if the limit should be raised.
usage-action = Open { $product }
contacts-80-subject = { $tenant }: 80% of Max Contacts used
contacts-80-heading = Contact limit almost reached
contacts-80-body = { $tenant } has { $count } of the { $limit } contacts it may keep.
contacts-100-subject = { $tenant }: Max Contacts reached
contacts-100-heading = Contact limit reached
contacts-100-body = { $tenant } has { $count } of the { $limit } contacts it may keep. New contacts cannot be created or imported; customers who write in are still added.
contacts-exceeded-subject = { $tenant }: more contacts than Max Contacts
contacts-exceeded-heading = Contact limit exceeded
contacts-exceeded-body = Customers writing in have brought { $tenant } to { $count } contacts, past its limit of { $limit }. Their messages are all received; delete contacts or ask your platform administrator to raise the limit.
sending-paused-subject = { $tenant }: sending from { $number } is paused
sending-paused-heading = Sending paused
sending-paused-body = Meta refused the access token of { $number } ({ $reason }). Its messages wait, queued, and go out once the account is verified again: update its access token, then verify the account.
endpoint-disabled-subject = { $tenant }: a webhook endpoint was disabled
endpoint-disabled-heading = Webhook endpoint disabled
endpoint-disabled-body = Events are no longer sent to { $url }: { $reason }. Fix the endpoint, enable it again, and replay the failed deliveries from its delivery log.
