import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { freshDatabase, NO_POSTGRES } from '../helpers/postgres.js';
import { hubStoreContract } from './store-contract.js';

hubStoreContract('PostgreSQL', { fresh: freshDatabase, open: (url) => PostgresHubStore.open(url) }, NO_POSTGRES);
