# النصوص العربية لرسائل imix الإلكترونية (صيغة Fluent: https://projectfluent.org).
product = iMix
footer = أُرسلت هذه الرسالة من { $product }. يُرجى عدم الرد عليها.
link-fallback = إذا لم يعمل الزر، انسخ هذا العنوان في متصفحك:

link-validity = هذا الرابط صالح لمدة { $hours ->
    [one] ساعة واحدة
    [two] ساعتين
    [few] { $hours } ساعات
   *[other] { $hours } ساعة
}.

invitation-subject = أنت مدعو للانضمام إلى { $organization } على { $product }
invitation-heading = مرحبًا، { $name }
invitation-body = لقد تمت دعوتك للانضمام إلى { $organization } على { $product }. اختر كلمة المرور لتفعيل حسابك.
invitation-action = تعيين كلمة المرور
invitation-note = إذا لم تكن تتوقع هذه الدعوة، يمكنك تجاهل هذه الرسالة.

password-reset-subject = إعادة تعيين كلمة مرور { $product }
password-reset-heading = إعادة تعيين كلمة المرور
password-reset-body = مرحبًا { $name }، تلقينا طلبًا لإعادة تعيين كلمة مرور حسابك على { $product }. اختر كلمة مرور جديدة عبر الرابط أدناه.
password-reset-action = اختيار كلمة مرور جديدة
password-reset-note = إذا لم تطلب ذلك، تجاهل هذه الرسالة: ستبقى كلمة مرورك دون تغيير.

smtp-test-subject = اختبار SMTP من { $product }
smtp-test-heading = إعدادات SMTP تعمل
smtp-test-body = أُرسلت رسالة الاختبار هذه عبر { $host }. لا حاجة لأي إجراء آخر.

usage-80-subject = { $tenant }: تم استخدام 80% من حد الرسائل اليومي
usage-80-heading = اقترب بلوغ الحد اليومي للرسائل
usage-80-body = أرسل { $tenant } { $used } من أصل { $limit } رسالة مسموح بها اليوم. عند بلوغ الحد يتوقف الإرسال حتى منتصف الليل بالتوقيت العالمي.
usage-100-subject = { $tenant }: تم بلوغ حد الرسائل اليومي
usage-100-heading = تم بلوغ الحد اليومي للرسائل
usage-100-body = أرسل { $tenant } { $used } من أصل { $limit } رسالة مسموح بها اليوم. لن تُرسل الرسائل الجديدة قبل منتصف الليل بالتوقيت العالمي؛ اطلب من مسؤول المنصة رفع الحد إذا لزم الأمر.
usage-action = فتح { $product }
contacts-80-subject = { $tenant }: تم استخدام 80% من حد جهات الاتصال
contacts-80-heading = اقترب بلوغ حد جهات الاتصال
contacts-80-body = لدى { $tenant } { $count } من أصل { $limit } جهة اتصال مسموح بها.
contacts-100-subject = { $tenant }: تم بلوغ حد جهات الاتصال
contacts-100-heading = تم بلوغ حد جهات الاتصال
contacts-100-body = لدى { $tenant } { $count } من أصل { $limit } جهة اتصال مسموح بها. لا يمكن إنشاء جهات اتصال جديدة أو استيرادها؛ ويُضاف العملاء الذين يراسلونك كالمعتاد.
contacts-exceeded-subject = { $tenant }: عدد جهات الاتصال تجاوز الحد
contacts-exceeded-heading = تم تجاوز حد جهات الاتصال
contacts-exceeded-body = أوصل العملاء الذين راسلوا { $tenant } عدد جهات الاتصال إلى { $count }، متجاوزين الحد البالغ { $limit }. استُلمت كل رسائلهم؛ احذف بعض جهات الاتصال أو اطلب من مسؤول المنصة رفع الحد.
sending-paused-subject = { $tenant }: تم إيقاف الإرسال من { $number } مؤقتًا
sending-paused-heading = الإرسال متوقف مؤقتًا
sending-paused-body = رفضت Meta رمز الوصول الخاص بالرقم { $number } ({ $reason }). تنتظر رسائله في قائمة الانتظار وستُرسل بعد التحقق من الحساب مجددًا: حدّث رمز الوصول ثم تحقق من الحساب.
endpoint-disabled-subject = { $tenant }: تم تعطيل نقطة نهاية webhook
endpoint-disabled-heading = نقطة النهاية معطلة
endpoint-disabled-body = لم تعد الأحداث تُرسل إلى { $url }: { $reason }. أصلح نقطة النهاية وأعد تفعيلها، ثم أعد إرسال عمليات التسليم الفاشلة من سجلها.
