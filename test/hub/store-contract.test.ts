import { PostgresHubStore } from '../../hub/store/pg-store.js';
import { SqliteHubStore } from '../../hub/store/sqlite-store.js';
import { freshDatabase, NO_POSTGRES } from '../helpers/postgres.js';
import { tempDir } from '../helpers/temp.js';
import { hubStoreContract } from './store-contract.js';

hubStoreContract('SQLite', { fresh: async () => tempDir('hub-store'), open: async (dir) => new SqliteHubStore(dir) });

hubStoreContract('PostgreSQL', { fresh: freshDatabase, open: (url) => PostgresHubStore.open(url) }, NO_POSTGRES);
