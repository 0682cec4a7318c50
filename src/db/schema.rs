// One schema for both backends; the migrations under migrations/{sqlite,postgres} create the same tables.

diesel::table! {
    organisations (id) {
        id -> Text,
        name -> Text,
        created_at -> BigInt,
        verified_at -> Nullable<BigInt>,
        verified_by -> Nullable<Text>,
        verification_method -> Nullable<Text>,
        merged_into -> Nullable<Text>,
        merged_at -> Nullable<BigInt>,
        require_second_factor -> Bool,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        display_name -> Text,
        role -> Text,
        organisation_id -> Nullable<Text>,
        password_hash -> Text,
        disabled -> Bool,
        training_completed_at -> Nullable<BigInt>,
        nda_signed_at -> Nullable<BigInt>,
        nda_reference -> Nullable<Text>,
        created_at -> BigInt,
        password_changed_at -> BigInt,
        org_admin -> Bool,
        email_verified_at -> Nullable<BigInt>,
        agency -> Nullable<Text>,
        nda_expires_at -> Nullable<BigInt>,
        notifications_off -> Text,
        suspended -> Bool,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        csrf_token -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        public_id -> Nullable<Text>,
        client_addr -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        second_factor_at -> Nullable<BigInt>,
        webauthn_state -> Nullable<Text>,
    }
}

diesel::table! {
    invitations (id) {
        id -> Text,
        token_hash -> Nullable<Text>,
        email -> Text,
        display_name -> Text,
        role -> Text,
        organisation_id -> Nullable<Text>,
        new_organisation -> Nullable<Text>,
        org_admin -> Bool,
        agency -> Nullable<Text>,
        invited_by -> Nullable<Text>,
        approval -> Nullable<Text>,
        approved_by -> Nullable<Text>,
        state -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        decided_at -> Nullable<BigInt>,
        decided_by -> Nullable<Text>,
        account_id -> Nullable<Text>,
    }
}

diesel::table! {
    privilege_requests (id) {
        id -> Text,
        account_id -> Text,
        change -> Text,
        role -> Nullable<Text>,
        reason -> Nullable<Text>,
        requested_by -> Nullable<Text>,
        requested_at -> BigInt,
        state -> Text,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    account_tokens (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        purpose -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    login_throttle (throttle_key) {
        throttle_key -> Text,
        failures -> BigInt,
        window_start -> BigInt,
        locked_until -> BigInt,
    }
}

diesel::table! {
    setup_tokens (token_hash) {
        token_hash -> Text,
        expires_at -> BigInt,
        used -> Bool,
    }
}

diesel::table! {
    settings (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    audit_entries (seq) {
        seq -> BigInt,
        at -> BigInt,
        actor_id -> Nullable<Text>,
        actor_role -> Nullable<Text>,
        client_addr -> Nullable<Text>,
        action -> Text,
        object_kind -> Nullable<Text>,
        object_id -> Nullable<Text>,
        tracking_number -> Nullable<Text>,
        outcome -> Text,
        reason -> Nullable<Text>,
        request_id -> Nullable<Text>,
        prev_hash -> Text,
        entry_hash -> Text,
    }
}

diesel::table! {
    audit_head (id) {
        id -> Integer,
        seq -> BigInt,
        entry_hash -> Text,
    }
}

diesel::table! {
    audit_checkpoints (seq) {
        seq -> BigInt,
        from_seq -> BigInt,
        chain_head -> Text,
        merkle_root -> Text,
        at -> BigInt,
        public_key -> Text,
        signature -> Text,
    }
}

diesel::table! {
    data_keys (key_id) {
        key_id -> Text,
        submission_id -> Text,
        wrapped -> Binary,
        master_key_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    blob_deletions (storage_name) {
        storage_name -> Text,
        queued_at -> BigInt,
        attempts -> Integer,
    }
}

diesel::table! {
    totp_factors (user_id) {
        user_id -> Text,
        secret_sealed -> Text,
        master_key_id -> Text,
        last_step -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    totp_enrolments (user_id) {
        user_id -> Text,
        secret_sealed -> Text,
        master_key_id -> Text,
        created_at -> BigInt,
        session_hash -> Text,
    }
}

diesel::table! {
    recovery_codes (id) {
        id -> Text,
        user_id -> Text,
        code_sha256 -> Text,
        created_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        credential_id -> Text,
        credential -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(totp_factors -> users (user_id));
diesel::joinable!(totp_enrolments -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(passkeys -> users (user_id));
diesel::joinable!(users -> organisations (organisation_id));
diesel::joinable!(sessions -> users (user_id));

diesel::table! {
    submissions (id) {
        id -> Text,
        tracking_number -> Nullable<Text>,
        organisation_id -> Text,
        submitter_id -> Text,
        status -> Text,
        sector -> Text,
        content_blob_id -> Nullable<Text>,
        statement_version -> Nullable<Text>,
        statement_affirmed_at -> Nullable<BigInt>,
        certified_at -> Nullable<BigInt>,
        file_count -> Integer,
        total_bytes -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        received_at -> Nullable<BigInt>,
        defect_notice_at -> Nullable<BigInt>,
        cure_due_at -> Nullable<BigInt>,
        decided_at -> Nullable<BigInt>,
        decided_by -> Nullable<Text>,
        disposition -> Nullable<Text>,
        closed_at -> Nullable<BigInt>,
        form_token -> Nullable<Text>,
        data_key_id -> Nullable<Text>,
        assigned_to -> Nullable<Text>,
        assigned_at -> Nullable<BigInt>,
        cured_at -> Nullable<BigInt>,
        title_sealed -> Nullable<Text>,
        statement_affirmed_by -> Nullable<Text>,
        disposition_due_at -> Nullable<BigInt>,
        sent_content_blob_id -> Nullable<Text>,
        sent_title_sealed -> Nullable<Text>,
        saved_sector -> Nullable<Text>,
    }
}

diesel::table! {
    tracking_counters (year) {
        year -> Integer,
        last_value -> BigInt,
    }
}

diesel::table! {
    blobs (id) {
        id -> Text,
        submission_id -> Text,
        kind -> Text,
        storage_name -> Text,
        key_id -> Text,
        ciphertext_sha256 -> Text,
        plaintext_len -> BigInt,
        ciphertext_len -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    attachments (id) {
        id -> Text,
        submission_id -> Text,
        blob_id -> Nullable<Text>,
        position -> Integer,
        size_bytes -> BigInt,
        added_at -> BigInt,
        legacy_sha256 -> Nullable<Text>,
        replaced_by -> Nullable<Text>,
        replaced_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    submission_events (id) {
        id -> Text,
        submission_id -> Text,
        at -> BigInt,
        actor_id -> Nullable<Text>,
        from_status -> Nullable<Text>,
        to_status -> Text,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    notices (id) {
        id -> Text,
        organisation_id -> Text,
        submission_id -> Text,
        created_at -> BigInt,
        message -> Text,
        read_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    grants (id) {
        id -> Text,
        submission_id -> Text,
        user_id -> Text,
        granted_by -> Text,
        reason -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revoked_by -> Nullable<Text>,
        revoke_reason -> Nullable<Text>,
    }
}

diesel::table! {
    disseminations (id) {
        id -> Text,
        submission_id -> Text,
        recorded_by -> Text,
        recipient -> Text,
        recipient_kind -> Text,
        arrangement -> Text,
        what -> Text,
        released_at -> BigInt,
        sanitized -> Bool,
        removed -> Nullable<Text>,
        created_at -> BigInt,
        purpose -> Text,
        consent -> Nullable<Text>,
    }
}

diesel::table! {
    destruction_records (id) {
        id -> Text,
        submission_id -> Text,
        destroyed_at -> BigInt,
        destroyed_by -> Nullable<Text>,
        reason -> Text,
        digests -> Text,
    }
}

diesel::table! {
    leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    access_requests (id) {
        id -> Text,
        submission_id -> Text,
        user_id -> Text,
        reason -> Text,
        state -> Text,
        created_at -> BigInt,
        decided_at -> Nullable<BigInt>,
        decided_by -> Nullable<Text>,
        refuse_reason -> Nullable<Text>,
    }
}

diesel::table! {
    notifications_sent (kind, subject, user_id) {
        kind -> Text,
        subject -> Text,
        user_id -> Text,
        sent_at -> BigInt,
    }
}

diesel::table! {
    pending_mail (id) {
        id -> Text,
        kind -> Text,
        user_id -> Text,
        path -> Text,
        created_at -> BigInt,
        attempts -> BigInt,
        next_attempt_at -> BigInt,
    }
}

diesel::table! {
    case_notes (id) {
        id -> Text,
        submission_id -> Text,
        author_id -> Text,
        body -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        submission_id -> Text,
        seq -> BigInt,
        author_id -> Text,
        side -> Text,
        body -> Text,
        is_request_for_information -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    message_files (id) {
        id -> Text,
        message_id -> Text,
        submission_id -> Text,
        blob_id -> Nullable<Text>,
        position -> Integer,
        size_bytes -> BigInt,
        name -> Text,
        created_at -> BigInt,
        sha256_sealed -> Nullable<Text>,
    }
}

diesel::table! {
    message_reads (user_id, submission_id) {
        user_id -> Text,
        submission_id -> Text,
        last_read_seq -> BigInt,
        last_read_at -> BigInt,
        last_mailed_seq -> BigInt,
    }
}

diesel::table! {
    merge_proposals (id) {
        id -> Text,
        duplicate_id -> Text,
        target_id -> Text,
        reason -> Text,
        proposed_by -> Text,
        proposed_at -> BigInt,
        duplicate_accepted_by -> Nullable<Text>,
        duplicate_accepted_at -> Nullable<BigInt>,
        target_accepted_by -> Nullable<Text>,
        target_accepted_at -> Nullable<BigInt>,
        state -> Text,
        closed_by -> Nullable<Text>,
        closed_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(submissions -> organisations (organisation_id));
diesel::joinable!(case_notes -> submissions (submission_id));
diesel::joinable!(blobs -> submissions (submission_id));
diesel::joinable!(data_keys -> submissions (submission_id));
diesel::joinable!(attachments -> submissions (submission_id));
diesel::joinable!(grants -> submissions (submission_id));
diesel::joinable!(disseminations -> submissions (submission_id));
diesel::joinable!(notices -> submissions (submission_id));
diesel::joinable!(access_requests -> submissions (submission_id));
diesel::joinable!(messages -> submissions (submission_id));
diesel::joinable!(message_files -> messages (message_id));

diesel::allow_tables_to_appear_in_same_query!(
    notifications_sent,
    organisations,
    users,
    sessions,
    login_throttle,
    setup_tokens,
    settings,
    audit_entries,
    audit_head,
    audit_checkpoints,
    submissions,
    blobs,
    attachments,
    grants,
    disseminations,
    notices,
    submission_events,
    destruction_records,
    tracking_counters,
    data_keys,
    blob_deletions,
    invitations,
    privilege_requests,
    account_tokens,
    totp_factors,
    totp_enrolments,
    recovery_codes,
    passkeys,
    leases,
    access_requests,
    case_notes,
    messages,
    message_files,
    message_reads,
    pending_mail,
    merge_proposals,
);
