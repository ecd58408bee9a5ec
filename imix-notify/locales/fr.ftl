# Chaînes françaises des e-mails imix (syntaxe Fluent : https://projectfluent.org).
product = iMix
footer = Cet e-mail a été envoyé par { $product }. Merci de ne pas y répondre.
link-fallback = Si le bouton ne fonctionne pas, copiez cette adresse dans votre navigateur :

link-validity = Ce lien est valable { $hours ->
    [one] une heure
   *[other] { $hours } heures
}.

invitation-subject = Vous êtes invité(e) à rejoindre { $organization } sur { $product }
invitation-heading = Bienvenue, { $name }
invitation-body = Vous avez été invité(e) à rejoindre { $organization } sur { $product }. Choisissez votre mot de passe pour activer votre compte.
invitation-action = Définir mon mot de passe
invitation-note = Si vous n'attendiez pas cette invitation, vous pouvez ignorer cet e-mail.

password-reset-subject = Réinitialisez votre mot de passe { $product }
password-reset-heading = Réinitialisation du mot de passe
password-reset-body = Bonjour { $name }, nous avons reçu une demande de réinitialisation du mot de passe de votre compte { $product }. Choisissez un nouveau mot de passe avec le lien ci-dessous.
password-reset-action = Choisir un nouveau mot de passe
password-reset-note = Si vous n'êtes pas à l'origine de cette demande, ignorez cet e-mail : votre mot de passe reste inchangé.

smtp-test-subject = Test SMTP de { $product }
smtp-test-heading = Vos paramètres SMTP fonctionnent
smtp-test-body = Cet e-mail de test a été envoyé via { $host }. Vous n'avez rien d'autre à faire.

usage-80-subject = { $tenant } : 80 % de la limite de messages du jour atteints
usage-80-heading = Limite quotidienne de messages bientôt atteinte
usage-80-body = { $tenant } a envoyé { $used } des { $limit } messages autorisés aujourd'hui. Une fois la limite atteinte, l'envoi s'arrête jusqu'à minuit UTC.
usage-100-subject = { $tenant } : la limite de messages du jour est atteinte
usage-100-heading = Limite quotidienne de messages atteinte
usage-100-body = { $tenant } a envoyé { $used } des { $limit } messages autorisés aujourd'hui. Les nouveaux messages ne seront pas envoyés avant minuit UTC ; demandez à l'administrateur de la plateforme s'il faut relever la limite.
usage-action = Ouvrir { $product }
contacts-80-subject = { $tenant } : 80 % de la limite de contacts atteints
contacts-80-heading = Limite de contacts bientôt atteinte
contacts-80-body = { $tenant } a { $count } des { $limit } contacts autorisés.
contacts-100-subject = { $tenant } : la limite de contacts est atteinte
contacts-100-heading = Limite de contacts atteinte
contacts-100-body = { $tenant } a { $count } des { $limit } contacts autorisés. Aucun contact ne peut plus être créé ni importé ; les clients qui écrivent sont toujours ajoutés.
contacts-exceeded-subject = { $tenant } : plus de contacts que la limite
contacts-exceeded-heading = Limite de contacts dépassée
contacts-exceeded-body = Les clients qui écrivent ont porté { $tenant } à { $count } contacts, au-delà de sa limite de { $limit }. Tous leurs messages sont reçus ; supprimez des contacts ou demandez à l'administrateur de la plateforme de relever la limite.
sending-paused-subject = { $tenant } : l'envoi depuis { $number } est suspendu
sending-paused-heading = Envoi suspendu
sending-paused-body = Meta a refusé le jeton d'accès de { $number } ({ $reason }). Ses messages attendent dans la file et partiront une fois le compte vérifié à nouveau : mettez à jour son jeton d'accès, puis vérifiez le compte.
endpoint-disabled-subject = { $tenant } : un point de terminaison de webhook a été désactivé
endpoint-disabled-heading = Point de terminaison désactivé
endpoint-disabled-body = Les événements ne sont plus envoyés à { $url } : { $reason }. Corrigez le point de terminaison, réactivez-le, puis rejouez les livraisons échouées depuis son journal.
